//! `fleetwire tesla decode FILE...`: prints captured frames (one WebSocket binary message
//! per file) as JSON — envelope fields plus the payload in protobuf's canonical JSON
//! mapping — for anyone debugging vehicle traffic.

use std::io::Write;
use std::path::PathBuf;

use fleetwire_actors::tesla::{self, MAX_FRAME_BYTES};

/// Decodes every file, printing one JSON document per frame to `out` and one line per
/// bad frame to `err`. Returns whether every frame was valid.
pub fn run(files: &[PathBuf], out: &mut impl Write, err: &mut impl Write) -> std::io::Result<bool> {
    let mut all_valid = true;
    for file in files {
        let described = std::fs::read(file)
            .map_err(|e| format!("cannot be read: {e}"))
            .and_then(|bytes| {
                if bytes.len() > MAX_FRAME_BYTES {
                    return Err(format!(
                        "is {} bytes; frames are at most {MAX_FRAME_BYTES} bytes",
                        bytes.len()
                    ));
                }
                tesla::describe_frame(&bytes).map_err(|e| format!("is not a valid frame: {e}"))
            });
        match described {
            Ok(frame) => {
                let doc = serde_json::json!({ "file": file.display().to_string(), "frame": frame });
                writeln!(out, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default())?;
            }
            Err(reason) => {
                all_valid = false;
                writeln!(err, "{}: {reason}", file.display())?;
            }
        }
    }
    Ok(all_valid)
}
