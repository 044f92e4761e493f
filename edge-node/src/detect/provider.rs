//! ONNX Runtime execution providers (`[detector] provider`): which library
//! carries each one, where it is looked for, and how its device is named.
//!
//! The provider is a choice for the whole process: ONNX Runtime is one
//! library per process (one environment, loaded once), and the OpenVINO and
//! GPU providers come with their own build of it (the `onnxruntime-openvino`
//! and `onnxruntime-gpu` PyPI wheels, unpacked by
//! `scripts/fetch-onnxruntime.sh --flavour openvino|gpu`). Every session of
//! the process (every camera's model) registers the same provider.
//!
//! Pure: no ort here; the registration itself is in `detect.rs`.

use std::fmt;
use std::path::{Path, PathBuf};

/// An ONNX Runtime execution provider edge-node can register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// ONNX Runtime's own CPU kernels (the `onnxruntime` wheel).
    #[default]
    Cpu,
    /// Intel OpenVINO (`onnxruntime-openvino`): CPU, integrated GPU or NPU.
    #[serde(rename = "openvino")]
    OpenVino,
    /// NVIDIA CUDA (`onnxruntime-gpu`).
    Cuda,
    /// NVIDIA TensorRT (`onnxruntime-gpu`, with TensorRT installed).
    #[serde(rename = "tensorrt")]
    TensorRt,
}

impl Provider {
    /// Every provider, in the order the docs list them.
    pub const ALL: [Provider; 4] = [
        Provider::Cpu,
        Provider::OpenVino,
        Provider::Cuda,
        Provider::TensorRt,
    ];

    /// The setting's value: `cpu`, `openvino`, `cuda`, `tensorrt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::OpenVino => "openvino",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        }
    }

    /// Parses the setting's value (exact, lower case).
    pub fn parse(s: &str) -> Result<Provider, String> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown provider {s:?}; choose one of {}", Self::choices()))
    }

    /// `cpu, openvino, cuda, tensorrt`.
    pub fn choices() -> String {
        Provider::ALL.map(Provider::as_str).join(", ")
    }

    /// The `scripts/fetch-onnxruntime.sh --flavour` that carries it.
    pub fn flavour(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::OpenVino => "openvino",
            Provider::Cuda | Provider::TensorRt => "gpu",
        }
    }

    /// The folder under `third_party/` (and `/opt/`) the flavour unpacks to.
    pub fn library_folder(self) -> &'static str {
        match self {
            Provider::Cpu => "onnxruntime",
            Provider::OpenVino => "onnxruntime-openvino",
            Provider::Cuda | Provider::TensorRt => "onnxruntime-gpu",
        }
    }

    /// The provider's own library, which ONNX Runtime loads from the folder
    /// of `libonnxruntime.so`; `None` for the built-in CPU provider.
    pub fn provider_library(self) -> Option<&'static str> {
        match self {
            Provider::Cpu => None,
            Provider::OpenVino => Some("libonnxruntime_providers_openvino.so"),
            Provider::Cuda => Some("libonnxruntime_providers_cuda.so"),
            Provider::TensorRt => Some("libonnxruntime_providers_tensorrt.so"),
        }
    }

    /// What to run to get the library: `scripts/fetch-onnxruntime.sh --flavour openvino`.
    pub fn fetch_hint(self) -> String {
        match self {
            Provider::Cpu => "scripts/fetch-onnxruntime.sh".into(),
            p => format!("scripts/fetch-onnxruntime.sh --flavour {}", p.flavour()),
        }
    }

    /// Whether `provider_device` means something for this provider.
    pub fn takes_device(self) -> bool {
        self != Provider::Cpu
    }

    /// Checks `[detector] provider_device` for this provider: an OpenVINO
    /// device (`CPU`, `GPU`, `GPU.1`, `NPU`, `AUTO:GPU,CPU`, `HETERO:…`,
    /// `MULTI:…`), or a CUDA device number for `cuda` and `tensorrt`.
    pub fn check_device(self, device: &str) -> Result<(), String> {
        match self {
            Provider::Cpu => Err(
                "the cpu provider takes no device; remove provider_device or choose openvino, cuda or tensorrt"
                    .into(),
            ),
            Provider::OpenVino => {
                let ok = ["CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI"]
                    .iter()
                    .any(|d| {
                        device == *d
                            || device
                                .strip_prefix(d)
                                .is_some_and(|rest| rest.starts_with(['.', ':']))
                    });
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "{device:?} is not an OpenVINO device; use CPU, GPU, GPU.1, NPU or AUTO:GPU,CPU"
                    ))
                }
            }
            Provider::Cuda | Provider::TensorRt => device.parse::<u32>().map(|_| ()).map_err(|_| {
                format!("{device:?} is not a CUDA device number; use 0, 1, …")
            }),
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::parse(s)
    }
}

/// Where `provider`'s `libonnxruntime.so` is looked for, in order, when the
/// config names none: `ORT_DYLIB_PATH` (`env`), then
/// `third_party/<folder>/lib/libonnxruntime.so` under `cwd` and its parent
/// (`cargo test` runs in the crate folder), `/opt/<folder>/lib/…`, and for
/// `cpu` only also `/opt/onnxruntime/lib/…` and the plain name (the dynamic
/// loader's search path). For the other providers a candidate counts only
/// with the provider's library next to it (see [`usable_for`]), so the
/// plain name, which cannot be checked, is left out.
pub fn search_paths(provider: Provider, env: Option<PathBuf>, cwd: Option<&Path>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = env.into_iter().collect();
    let rel = Path::new("third_party")
        .join(provider.library_folder())
        .join("lib/libonnxruntime.so");
    if let Some(cwd) = cwd {
        v.push(cwd.join(&rel));
        if let Some(parent) = cwd.parent() {
            v.push(parent.join(&rel));
        }
    }
    v.push(
        Path::new("/opt")
            .join(provider.library_folder())
            .join("lib/libonnxruntime.so"),
    );
    if provider == Provider::Cpu {
        v.push(PathBuf::from("libonnxruntime.so"));
    }
    v
}

/// `Ok` when `lib` can serve `provider` as far as files tell: it exists (a
/// bare name is left to the loader) and, for a provider other than `cpu`,
/// the provider's library sits next to it. `Err` says why not, for the
/// "tried" list.
pub fn usable_for(provider: Provider, lib: &Path) -> Result<(), String> {
    let bare = lib.parent().is_none_or(|p| p.as_os_str().is_empty());
    if !bare && !lib.exists() {
        return Err("no such file".into());
    }
    if let Some(name) = provider.provider_library() {
        if bare {
            return Err(format!("cannot tell whether {name} is next to it"));
        }
        let dir = lib.parent().unwrap_or(Path::new("."));
        if !dir.join(name).exists() {
            return Err(format!(
                "no {name} next to it: not a build with the {provider} provider"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_list_the_choices() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Ok(p));
        }
        let e = Provider::parse("OpenVINO").unwrap_err();
        assert!(e.contains("cpu, openvino, cuda, tensorrt"), "{e}");
        assert_eq!(Provider::default(), Provider::Cpu);
    }

    #[test]
    fn devices_are_checked_per_provider() {
        assert!(Provider::OpenVino.check_device("CPU").is_ok());
        assert!(Provider::OpenVino.check_device("GPU.1").is_ok());
        assert!(Provider::OpenVino.check_device("AUTO:GPU,CPU").is_ok());
        assert!(Provider::OpenVino.check_device("gpu").is_err());
        assert!(Provider::OpenVino.check_device("GPUX").is_err());
        assert!(Provider::Cuda.check_device("1").is_ok());
        assert!(Provider::TensorRt.check_device("GPU").is_err());
        assert!(Provider::Cpu.check_device("CPU").is_err());
    }

    #[test]
    fn search_paths_per_flavour() {
        let cwd = Path::new("/repo/edge-node");
        let ov = search_paths(
            Provider::OpenVino,
            Some(PathBuf::from("/x/libonnxruntime.so")),
            Some(cwd),
        );
        assert_eq!(
            ov,
            [
                "/x/libonnxruntime.so",
                "/repo/edge-node/third_party/onnxruntime-openvino/lib/libonnxruntime.so",
                "/repo/third_party/onnxruntime-openvino/lib/libonnxruntime.so",
                "/opt/onnxruntime-openvino/lib/libonnxruntime.so",
            ]
            .map(PathBuf::from)
        );
        let cpu = search_paths(Provider::Cpu, None, Some(cwd));
        assert_eq!(cpu.last(), Some(&PathBuf::from("libonnxruntime.so")));
        assert!(
            search_paths(Provider::Cuda, None, Some(cwd))[0]
                .ends_with("edge-node/third_party/onnxruntime-gpu/lib/libonnxruntime.so")
        );
    }

    #[test]
    fn a_library_without_the_provider_next_to_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libonnxruntime.so");
        assert_eq!(
            usable_for(Provider::Cpu, &lib),
            Err("no such file".to_string())
        );
        std::fs::write(&lib, b"").unwrap();
        assert!(usable_for(Provider::Cpu, &lib).is_ok());
        let e = usable_for(Provider::OpenVino, &lib).unwrap_err();
        assert!(e.contains("libonnxruntime_providers_openvino.so"), "{e}");
        std::fs::write(dir.path().join("libonnxruntime_providers_openvino.so"), b"").unwrap();
        assert!(usable_for(Provider::OpenVino, &lib).is_ok());
        assert!(usable_for(Provider::Cuda, &lib).is_err());
        assert!(usable_for(Provider::Cuda, Path::new("libonnxruntime.so")).is_err());
        assert!(usable_for(Provider::Cpu, Path::new("libonnxruntime.so")).is_ok());
    }
}
