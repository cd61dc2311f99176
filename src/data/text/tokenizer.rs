//! Tokenizers: one token per character, or subwords (byte-level BPE, WordPiece) trained with
//! Hugging Face's `tokenizers` on the training split, or an existing `tokenizer.json`.
//! Either way the tokenizer serialises to one JSON file that travels with runs, checkpoints
//! and exports.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::normalizers::utils::Lowercase;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessor, PostProcessorWrapper,
    PreTokenizerWrapper, TokenizerBuilder, TokenizerImpl,
};

use crate::config::{TokenizerConfig, TokenizerKind};
use crate::data::DataError;

const PAD: &str = "[PAD]";
const UNK: &str = "[UNK]";
const CHAR_FORMAT: &str = "stoke-char";

pub struct Tokenizer {
    inner: Inner,
}

enum Inner {
    Char(CharTokenizer),
    Subword(Box<tokenizers::Tokenizer>),
}

/// Ids 0 and 1 are padding and unknown; the training text's characters follow, sorted.
struct CharTokenizer {
    chars: Vec<char>,
    ids: HashMap<char, u32>,
    lowercase: bool,
}

impl CharTokenizer {
    fn new(chars: Vec<char>, lowercase: bool) -> Self {
        let ids = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as u32 + 2))
            .collect();
        Self {
            chars,
            ids,
            lowercase,
        }
    }
}

/// A subword tokenizer under construction, generic over its model (BPE or WordPiece).
type Builder<M> =
    TokenizerImpl<M, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

/// Trains `tokenizer` on `texts`, then reloads it as the general `tokenizers::Tokenizer` that
/// encodes and serialises every kind the same way.
fn train_subword<'a, M, T>(
    mut tokenizer: Builder<M>,
    trainer: &mut T,
    texts: impl Iterator<Item = &'a str> + Send,
) -> Result<Inner, DataError>
where
    M: tokenizers::Model + serde::Serialize + Send + Sync,
    T: tokenizers::Trainer<Model = M> + Sync,
{
    tokenizer.train(trainer, texts).map_err(tokenizer_error)?;
    Tokenizer::subword_from_json(&tokenizer.to_string(false).map_err(tokenizer_error)?)
}

fn tokenizer_error(err: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(err.to_string())
}

impl Tokenizer {
    /// Trains the tokenizer `config` describes on `texts` (or reads it, for kind = "file").
    pub fn train<'a>(
        config: &TokenizerConfig,
        texts: impl Iterator<Item = &'a str> + Send + Clone,
    ) -> Result<Self, DataError> {
        let special = || vec![AddedToken::from(PAD, true), AddedToken::from(UNK, true)];
        let inner = match config.kind {
            TokenizerKind::Char => {
                let mut chars = BTreeSet::new();
                for text in texts {
                    if config.lowercase {
                        chars.extend(text.chars().flat_map(char::to_lowercase));
                    } else {
                        chars.extend(text.chars());
                    }
                }
                Inner::Char(CharTokenizer::new(
                    chars.into_iter().collect(),
                    config.lowercase,
                ))
            }
            TokenizerKind::Bpe => {
                let mut trainer = BpeTrainerBuilder::new()
                    .vocab_size(config.vocab_size)
                    .show_progress(false)
                    .special_tokens(special())
                    .initial_alphabet(
                        tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
                            .into_iter()
                            .collect(),
                    )
                    .build();
                let tokenizer: Builder<BPE> = TokenizerBuilder::new()
                    .with_model(BPE::default())
                    .with_normalizer(config.lowercase.then(|| Lowercase.into()))
                    .with_pre_tokenizer(Some(
                        // No prefix space: decoding gives back exactly the text.
                        tokenizers::pre_tokenizers::byte_level::ByteLevel::default()
                            .add_prefix_space(false)
                            .into(),
                    ))
                    .with_post_processor(None)
                    .with_decoder(Some(ByteLevel::default().into()))
                    .build()
                    .map_err(tokenizer_error)?;
                train_subword(tokenizer, &mut trainer, texts)?
            }
            TokenizerKind::Wordpiece => {
                let mut trainer = WordPieceTrainerBuilder::new()
                    .vocab_size(config.vocab_size)
                    .show_progress(false)
                    .special_tokens(special())
                    .build();
                let tokenizer: Builder<WordPiece> = TokenizerBuilder::new()
                    .with_model(WordPiece::default())
                    .with_normalizer(Some(
                        BertNormalizer::new(true, true, None, config.lowercase).into(),
                    ))
                    .with_pre_tokenizer(Some(BertPreTokenizer.into()))
                    .with_post_processor(None)
                    .with_decoder(Some(WordPieceDecoder::default().into()))
                    .build()
                    .map_err(tokenizer_error)?;
                train_subword(tokenizer, &mut trainer, texts)?
            }
            TokenizerKind::File => {
                let json =
                    std::fs::read_to_string(&config.path).map_err(|source| DataError::Io {
                        path: config.path.clone(),
                        source,
                    })?;
                return Self::from_json(&json).map_err(|err| DataError::Corrupt {
                    path: config.path.clone(),
                    detail: err.to_string(),
                });
            }
        };
        Ok(Self { inner })
    }

    fn subword_from_json(json: &str) -> Result<Inner, DataError> {
        let mut tokenizer = tokenizers::Tokenizer::from_str(json).map_err(tokenizer_error)?;
        // stoke cuts and pads texts itself; a tokenizer.json saved with truncation or fixed
        // padding (sentence-transformers' are) would pad every text to its length.
        tokenizer
            .with_truncation(None)
            .map_err(tokenizer_error)?
            .with_padding(None);
        Ok(Inner::Subword(Box::new(tokenizer)))
    }

    /// Reads a tokenizer saved by [`Self::to_json`], or any Hugging Face `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Self, DataError> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|err| tokenizer_error(format!("not JSON: {err}")))?;
        let inner = if value.get("type").and_then(|t| t.as_str()) == Some(CHAR_FORMAT) {
            let chars = value["chars"]
                .as_str()
                .ok_or_else(|| tokenizer_error("a character tokenizer without \"chars\""))?;
            let lowercase = value["lowercase"].as_bool().unwrap_or(false);
            Inner::Char(CharTokenizer::new(chars.chars().collect(), lowercase))
        } else {
            Self::subword_from_json(json)?
        };
        Ok(Self { inner })
    }

    pub fn to_json(&self) -> String {
        match &self.inner {
            Inner::Char(char) => serde_json::json!({
                "type": CHAR_FORMAT,
                "lowercase": char.lowercase,
                "chars": char.chars.iter().collect::<String>(),
            })
            .to_string(),
            Inner::Subword(tokenizer) => tokenizer
                .to_string(false)
                .expect("a loaded tokenizer serialises"),
        }
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        match &self.inner {
            Inner::Char(char) => {
                let id = |c: char| char.ids.get(&c).copied().unwrap_or(1);
                if char.lowercase {
                    text.chars().flat_map(char::to_lowercase).map(id).collect()
                } else {
                    text.chars().map(id).collect()
                }
            }
            Inner::Subword(tokenizer) => tokenizer
                .encode_fast(text, false)
                .map(|encoding| encoding.get_ids().to_vec())
                .unwrap_or_default(),
        }
    }

    /// A text as a classifier reads it: with the special tokens the tokenizer's post-processor
    /// adds (BERT's `[CLS]` … `[SEP]`; none for stoke's own tokenizers), at most `max_length`
    /// ids, cut before the closing tokens so that they stay.
    pub fn encode_classified(&self, text: &str, max_length: usize) -> Vec<u32> {
        let Inner::Subword(tokenizer) = &self.inner else {
            let mut ids = self.encode(text);
            ids.truncate(max_length);
            return ids;
        };
        let Ok(mut encoding) = tokenizer.encode_fast(text, false) else {
            return Vec::new();
        };
        let added = tokenizer
            .get_post_processor()
            .map_or(0, |processor| processor.added_tokens(false));
        encoding.truncate(
            max_length.saturating_sub(added),
            0,
            tokenizers::TruncationDirection::Right,
        );
        match tokenizer.post_process(encoding, None, true) {
            Ok(encoding) => encoding.get_ids().to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// Encodes many texts, on all cores for subword tokenizers.
    pub fn encode_all(&self, texts: &[&str]) -> Vec<Vec<u32>> {
        match &self.inner {
            Inner::Subword(tokenizer) => match tokenizer.encode_batch_fast(texts.to_vec(), false) {
                Ok(encodings) => encodings.iter().map(|e| e.get_ids().to_vec()).collect(),
                Err(_) => texts.iter().map(|text| self.encode(text)).collect(),
            },
            Inner::Char(_) => texts.iter().map(|text| self.encode(text)).collect(),
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        match &self.inner {
            Inner::Char(char) => ids
                .iter()
                .filter_map(|&id| match id {
                    0 => None,
                    1 => Some('\u{FFFD}'),
                    id => char.chars.get(id as usize - 2).copied(),
                })
                .collect(),
            Inner::Subword(tokenizer) => tokenizer.decode(ids, true).unwrap_or_default(),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Char(char) => char.chars.len() + 2,
            Inner::Subword(tokenizer) => tokenizer.get_vocab_size(true),
        }
    }

    /// The id padded positions hold.
    pub fn pad_id(&self) -> u32 {
        match &self.inner {
            Inner::Char(_) => 0,
            Inner::Subword(tokenizer) => tokenizer.token_to_id(PAD).unwrap_or(0),
        }
    }

    /// The id of the unknown token, when the vocabulary has one.
    pub fn unknown_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Char(_) => Some(1),
            Inner::Subword(tokenizer) => tokenizer.token_to_id(UNK),
        }
    }

    pub fn kind(&self) -> &'static str {
        match &self.inner {
            Inner::Char(_) => "char",
            Inner::Subword(_) => "subword",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: [&str; 3] = [
        "Call me Ishmael. Some years ago, never mind how long precisely.",
        "It is a way I have of driving off the spleen and regulating the circulation.",
        "Whenever I find myself growing grim about the mouth, it is high time to get to sea.",
    ];

    fn config(kind: TokenizerKind) -> TokenizerConfig {
        TokenizerConfig {
            kind,
            vocab_size: 300,
            ..Default::default()
        }
    }

    #[test]
    fn every_kind_round_trips_text_and_its_json() {
        for kind in [TokenizerKind::Char, TokenizerKind::Bpe] {
            let tokenizer = Tokenizer::train(&config(kind), TEXT.iter().copied()).unwrap();
            let text = "Call me Ishmael, it is high time.";
            let ids = tokenizer.encode(text);
            assert!(!ids.is_empty());
            assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()));
            assert_eq!(tokenizer.decode(&ids), text, "{kind:?}");
            let reloaded = Tokenizer::from_json(&tokenizer.to_json()).unwrap();
            assert_eq!(reloaded.encode(text), ids, "{kind:?}");
            assert_eq!(reloaded.vocab_size(), tokenizer.vocab_size());
        }
    }

    #[test]
    fn bpe_compresses_and_never_needs_unknown_tokens() {
        let config = TokenizerConfig {
            vocab_size: 500,
            ..config(TokenizerKind::Bpe)
        };
        let tokenizer = Tokenizer::train(&config, TEXT.iter().copied()).unwrap();
        let text = TEXT[2];
        assert!(tokenizer.encode(text).len() < text.len() / 2);
        // Byte-level: characters never seen in training still round-trip.
        assert_eq!(tokenizer.decode(&tokenizer.encode("ζ★")), "ζ★");
        assert_eq!(tokenizer.pad_id(), 0);
    }

    #[test]
    fn wordpiece_trains_and_encodes() {
        let tokenizer =
            Tokenizer::train(&config(TokenizerKind::Wordpiece), TEXT.iter().copied()).unwrap();
        let ids = tokenizer.encode("call me ishmael");
        assert!(!ids.is_empty());
        assert_eq!(tokenizer.decode(&ids), "call me ishmael");
    }

    #[test]
    fn unseen_characters_map_to_unknown() {
        let tokenizer = Tokenizer::train(&config(TokenizerKind::Char), ["ab"].into_iter()).unwrap();
        assert_eq!(tokenizer.encode("abz"), [2, 3, 1]);
        assert_eq!(tokenizer.vocab_size(), 4);
    }

    #[test]
    fn training_is_deterministic() {
        let a = Tokenizer::train(&config(TokenizerKind::Bpe), TEXT.iter().copied()).unwrap();
        let b = Tokenizer::train(&config(TokenizerKind::Bpe), TEXT.iter().copied()).unwrap();
        assert_eq!(a.to_json(), b.to_json());
    }
}
