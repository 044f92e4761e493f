//! Arbitrary bytes as UTF-8 through the pipeline TOML loader: parse,
//! validate, resolve. Any outcome but a panic is fine.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A folder that does not exist: path resolution only stats files.
    let path = Path::new("/nonexistent-edge-node-fuzz/pipeline.toml");
    if let Ok(p) = edge_node::config::Pipeline::from_str(path, text) {
        let labels: Vec<String> = ["person", "car"].iter().map(|s| s.to_string()).collect();
        for cam in &p.raw.cameras {
            let _ = edge_node::config::camera_rules(&p.raw.rules, cam, &labels);
        }
    }
});
