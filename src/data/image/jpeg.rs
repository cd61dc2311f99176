//! JPEGs decoded as Pillow decodes them: libjpeg-turbo's decoder (mozjpeg's, with the
//! accurate integer IDCT and smooth chroma upsampling that Pillow's build uses), so good files
//! give Pillow's pixels byte for byte, and damaged files are refused where Pillow refuses them.
//!
//! libjpeg reports a fatal error (a bogus marker, an unsupported format) by calling its error
//! manager's `error_exit`; here that unwinds with libjpeg's message, which
//! `crate::panics::contained` catches at this one boundary (with any panic of the binding's
//! own), so no damaged file can panic a command. libjpeg reads past the end of a cut file as if an end-of-image marker
//! were there, fills the missing rows with grey and only warns (`JWRN_JPEG_EOF`); Pillow
//! instead raises "image file is truncated", and so does this decoder. Its other warnings
//! (corrupt entropy data it can resynchronise after) are ignored, as Pillow ignores them.

use std::os::raw::c_int;
use std::panic::resume_unwind;

use mozjpeg_sys::{JWRN_JPEG_EOF, jpeg_common_struct, jpeg_error_mgr, jpeg_std_error};

/// What Pillow says of a JPEG that ends before its image does.
pub const TRUNCATED: &str = "image file is truncated";

/// The most pixels Pillow decodes (`Image.MAX_IMAGE_PIXELS`, 89,478,485, twice over): a few
/// hundred bytes of header can promise gigabytes of pixels, and Pillow refuses such a file as
/// a decompression bomb before decoding it, as this decoder does.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// Decodes the JPEG `bytes` to RGB, or gray for a grayscale JPEG. `Ok(None)` for one this
/// decoder does not turn into either (CMYK, YCCK), which the `image` crate then tries; an
/// error for a damaged or truncated file.
pub fn decode(bytes: &[u8]) -> Result<Option<image::DynamicImage>, String> {
    crate::panics::contained(|| decode_unwinding(bytes)).unwrap_or_else(|message| {
        // libjpeg's own messages say whose they are; a panic of the binding's does not.
        match message == TRUNCATED || message.starts_with("libjpeg") {
            true => Err(message),
            false => Err(format!("libjpeg: {message}")),
        }
    })
}

fn decode_unwinding(bytes: &[u8]) -> Result<Option<image::DynamicImage>, String> {
    let decompress = mozjpeg::Decompress::with_err(error_manager())
        .from_mem(bytes)
        .map_err(libjpeg)?;
    let (width, height) = (decompress.width() as u32, decompress.height() as u32);
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(format!(
            "image size ({pixels} pixels) exceeds limit of {MAX_PIXELS} pixels, could be \
             decompression bomb DOS attack"
        ));
    }
    let decoded = match decompress.color_space() {
        mozjpeg::ColorSpace::JCS_GRAYSCALE => {
            let mut started = decompress.grayscale().map_err(libjpeg)?;
            let pixels: Vec<u8> = started.read_scanlines().map_err(libjpeg)?;
            after_the_last_row(|| started.finish())?;
            image::GrayImage::from_raw(width, height, pixels).map(image::DynamicImage::from)
        }
        mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK => return Ok(None),
        _ => {
            let mut started = decompress.rgb().map_err(libjpeg)?;
            let pixels: Vec<u8> = started.read_scanlines().map_err(libjpeg)?;
            after_the_last_row(|| started.finish())?;
            image::RgbImage::from_raw(width, height, pixels).map(image::DynamicImage::from)
        }
    };
    decoded
        .map(Some)
        .ok_or_else(|| "libjpeg returned fewer pixels than its header promised".into())
}

/// Finishes a decode whose every row was read. Pillow asks nothing of the bytes after the
/// last row: running out of them there (no end-of-image marker, or a damaged marker that
/// skips past the end) is no error, where libjpeg's reading to the end would be one.
fn after_the_last_row(finish: impl FnOnce() -> std::io::Result<()>) -> Result<(), String> {
    match crate::panics::contained(finish) {
        Ok(finished) => finished.map_err(libjpeg),
        Err(message) if message == TRUNCATED || message.ends_with(READ_ERROR) => Ok(()),
        Err(message) => Err(message),
    }
}

/// libjpeg's message when a marker's length reaches past the end of the data.
const READ_ERROR: &str = "Input file read error";

fn libjpeg(err: std::io::Error) -> String {
    format!("libjpeg: {err}")
}

/// libjpeg's standard error manager, with fatal errors and the end-of-file warning turned
/// into unwinds that [`decode`] catches, and every other message silenced.
fn error_manager() -> jpeg_error_mgr {
    // SAFETY: `jpeg_std_error` fills in every field of the zeroed struct it is given.
    let mut manager: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { jpeg_std_error(&mut manager) };
    manager.error_exit = Some(fatal);
    manager.emit_message = Some(message);
    manager
}

extern "C-unwind" fn fatal(cinfo: &mut jpeg_common_struct) {
    let text = format!("libjpeg: {}", formatted(cinfo));
    resume_unwind(Box::new(text));
}

extern "C-unwind" fn message(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: libjpeg calls this with `err` pointing at the manager it was given.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 && code == JWRN_JPEG_EOF as c_int {
        resume_unwind(Box::new(TRUNCATED.to_string()));
    }
}

/// libjpeg's text for its last message, parameters filled in.
fn formatted(cinfo: &mut jpeg_common_struct) -> String {
    // libjpeg writes at most JMSG_LENGTH_MAX (200) bytes; the binding types the buffer as 80.
    let mut buffer = [0u8; 200];
    // SAFETY: `err` is the manager `jpeg_std_error` filled in, whose `format_message` writes a
    // NUL-terminated string of at most 200 bytes into the buffer it is given.
    unsafe {
        let Some(format) = (*cinfo.err).format_message else {
            return format!("error {}", (*cinfo.err).msg_code);
        };
        format(cinfo, &*(buffer.as_mut_ptr() as *const [u8; 80]));
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real JPEG: a gradient encoded by the `image` crate.
    fn photo() -> Vec<u8> {
        let image = image::RgbImage::from_fn(48, 40, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 6) as u8, ((x + y) * 3) as u8])
        });
        let mut bytes = Vec::new();
        image::DynamicImage::from(image)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        bytes
    }

    #[test]
    fn a_good_jpeg_decodes_and_damaged_ones_are_errors_not_panics() {
        let good = photo();
        let decoded = decode(&good).unwrap().unwrap();
        assert_eq!((decoded.width(), decoded.height()), (48, 40));
        // Cut short: Pillow's verdict.
        assert_eq!(decode(&good[..good.len() / 2]).unwrap_err(), TRUNCATED);
        assert!(decode(&good[..300]).is_err());
        // A valid header, then garbage.
        let mut garbage = good.clone();
        let start = garbage.len() / 3;
        for (i, byte) in garbage[start..].iter_mut().enumerate() {
            *byte = (i * 7919 % 251) as u8;
        }
        assert!(decode(&garbage).is_err());
        // A header promising 1.3 billion pixels (found by fuzzing): Pillow's refusal, before
        // any pixel is allocated.
        let bomb = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/regressions/image/oom-1a1ffc08cb38a48114c00b9cc44b4ab17f17f53a"
        ))
        .unwrap();
        assert_eq!(
            decode(&bomb).unwrap_err(),
            "image size (1289168595 pixels) exceeds limit of 178956970 pixels, could be \
             decompression bomb DOS attack"
        );
        // Not a JPEG at all.
        let nothing = decode(b"\xff\xd8\xff\xe0 nothing").unwrap_err();
        assert!(
            nothing == TRUNCATED || nothing.starts_with("libjpeg"),
            "{nothing}"
        );
    }
}
