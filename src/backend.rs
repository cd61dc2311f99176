//! The one place that chooses the compute backend. Everything else takes the `Device` chosen
//! here and never names a backend.

use std::fmt;
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use burn::tensor::wgpu::wgpu::DeviceType;
use burn::tensor::{Device, DeviceKind};

use crate::config::{BackendChoice, CpuBackend};

/// How long opening a wgpu adapter may take before `auto` gives up on it.
const WGPU_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendName {
    Wgpu,
    Flex,
    Ndarray,
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendName::Wgpu => "wgpu",
            BackendName::Flex => "flex",
            BackendName::Ndarray => "ndarray",
        })
    }
}

/// The device runs train on, and why it was chosen.
#[derive(Clone)]
pub struct SelectedBackend {
    pub device: Device,
    pub name: BackendName,
    /// The GPU adapter, for wgpu.
    pub adapter: Option<String>,
    /// One line for the user: what was chosen and why.
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "backend \"wgpu\" cannot open a GPU adapter: {0}\n  install a Vulkan driver (on Debian: mesa-vulkan-drivers libvulkan1) or choose --backend flex"
    )]
    WgpuUnavailable(String),
}

pub fn select(
    choice: BackendChoice,
    fallback: CpuBackend,
) -> Result<SelectedBackend, BackendError> {
    match choice {
        BackendChoice::Flex => Ok(cpu(CpuBackend::Flex, "flex, as configured".into())),
        BackendChoice::Ndarray => Ok(cpu(CpuBackend::Ndarray, "ndarray, as configured".into())),
        BackendChoice::Wgpu => {
            let (device, adapter) = open_wgpu().map_err(BackendError::WgpuUnavailable)?;
            let reason = format!("wgpu on {}, as configured", adapter.describe());
            Ok(wgpu(device, adapter, reason))
        }
        BackendChoice::Auto => Ok(match open_wgpu() {
            Ok((device, adapter)) if adapter.device_type != DeviceType::Cpu => {
                let reason = format!(
                    "wgpu on {} (auto: a GPU adapter opened)",
                    adapter.describe()
                );
                wgpu(device, adapter, reason)
            }
            Ok((_, adapter)) => cpu(
                fallback,
                format!(
                    "{} (auto: the only wgpu adapter, {}, emulates a GPU on the CPU; --backend wgpu uses it anyway)",
                    cpu_name(fallback),
                    adapter.describe()
                ),
            ),
            Err(why) => cpu(
                fallback,
                format!("{} (auto: no GPU adapter found: {why})", cpu_name(fallback)),
            ),
        }),
    }
}

fn cpu_name(backend: CpuBackend) -> BackendName {
    match backend {
        CpuBackend::Flex => BackendName::Flex,
        CpuBackend::Ndarray => BackendName::Ndarray,
    }
}

fn cpu(backend: CpuBackend, reason: String) -> SelectedBackend {
    #[allow(deprecated)] // ndarray is deprecated upstream; the design asks for it as a fallback.
    let device = match backend {
        CpuBackend::Flex => Device::flex(),
        CpuBackend::Ndarray => Device::ndarray(),
    };
    SelectedBackend {
        device,
        name: cpu_name(backend),
        adapter: None,
        reason,
    }
}

fn wgpu(device: Device, adapter: Adapter, reason: String) -> SelectedBackend {
    SelectedBackend {
        device,
        name: BackendName::Wgpu,
        adapter: Some(adapter.describe()),
        reason,
    }
}

/// The GPU adapter wgpu opens.
#[derive(Clone)]
pub struct Adapter {
    pub name: String,
    pub device_type: DeviceType,
    /// The graphics API: Vulkan, Metal, Dx12 or Gl.
    pub api: String,
}

impl Adapter {
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {})", self.name, self.device_type, self.api)
    }

    /// A GPU emulated on the CPU (Mesa's lavapipe or llvmpipe): `auto` never picks one.
    pub fn is_software(&self) -> bool {
        self.device_type == DeviceType::Cpu
    }
}

/// The adapter wgpu opens on this machine, or why none opens.
pub fn wgpu_adapter() -> Result<Adapter, String> {
    open_wgpu().map(|(_, adapter)| adapter)
}

/// Opens wgpu's preferred adapter once per process; later calls get the same outcome.
fn open_wgpu() -> Result<(Device, Adapter), String> {
    static OPENED: OnceLock<Result<(Device, Adapter), String>> = OnceLock::new();
    OPENED.get_or_init(probe_wgpu).clone()
}

/// The adapter this process asks for: wgpu's preferred one, or on a machine that runs
/// several ranks of a distributed run, the discrete GPU of this rank's index on the machine
/// (`CUBECL_WGPU_DEFAULT_DEVICE` overrides both, as burn documents).
fn device_kind() -> DeviceKind {
    let world = crate::distributed::world();
    let overridden = std::env::var_os("CUBECL_WGPU_DEFAULT_DEVICE").is_some();
    if world.local_size() > 1 && !overridden {
        DeviceKind::DiscreteGpu(world.local_rank())
    } else {
        DeviceKind::DefaultDevice
    }
}

/// Opens the adapter on a separate thread, so a driver that hangs or panics costs a timeout
/// instead of the run.
fn probe_wgpu() -> Result<(Device, Adapter), String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("stoke-wgpu-probe".into())
        .spawn(move || {
            let opened = Device::wgpu_options()
                .device_kind(device_kind())
                .init_with_setup()
                .map(|(device, setup)| {
                    let info = setup.adapter.get_info();
                    let adapter = Adapter {
                        name: info.name,
                        device_type: info.device_type,
                        api: format!("{:?}", info.backend),
                    };
                    (device, adapter)
                })
                .map_err(|err| err.to_string());
            let _ = sender.send(opened);
        })
        .map_err(|err| format!("cannot start the probe thread: {err}"))?;
    match receiver.recv_timeout(WGPU_PROBE_TIMEOUT) {
        Ok(opened) => opened.map_err(|err| first_line(&err)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "opening the adapter took over {} s",
            WGPU_PROBE_TIMEOUT.as_secs()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err("the wgpu driver failed while opening the adapter".into())
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).trim().to_string()
}
