//! Plain data types shared by every stage: frames, boxes and detections.
//!
//! Nothing here touches GStreamer, ONNX Runtime or MQTT; these are the
//! internal types, not the wire types (see `publish` for those).

use std::sync::Arc;
use std::time::SystemTime;

/// An axis-aligned box in pixels of the frame it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub const fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) * 0.5, (self.y1 + self.y2) * 0.5)
    }

    /// Intersection over union; 0 when either box is empty.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let iy = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// The box clipped to `0..w` × `0..h`.
    pub fn clamp(&self, w: f32, h: f32) -> BBox {
        BBox {
            x1: self.x1.clamp(0.0, w),
            y1: self.y1.clamp(0.0, h),
            x2: self.x2.clamp(0.0, w),
            y2: self.y2.clamp(0.0, h),
        }
    }
}

/// One detected object in one frame, in that frame's pixel coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// Index into the model's class names.
    pub class_id: u32,
    pub score: f32,
    pub bbox: BBox,
}

/// A decoded, sampled video frame handed from `source` to the detector.
///
/// `data` is tightly packed RGB24 (`width * height * 3` bytes, no row padding).
#[derive(Debug)]
pub struct Frame {
    pub camera: Arc<str>,
    /// Frame counter of this camera since the node started (across reconnects).
    pub index: u64,
    /// Media time in seconds: monotonic per camera, across reconnects and loops.
    /// Everything downstream (tracker, event lifecycle) uses this clock only.
    pub t: f64,
    /// Wall-clock time the frame stands for (capture time for live sources,
    /// stream start + PTS for files).
    pub wall: SystemTime,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}
