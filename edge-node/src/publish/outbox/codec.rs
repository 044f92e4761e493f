//! The record codec of the outbox's `msgs` and `quarantine` tables:
//!
//! ```text
//! [format u8][class u8][has_fallback u8][camera u16+bytes][topic u16+bytes]
//! [payload u32+bytes][fallback u32+bytes]
//! ```

use super::Class;

const FORMAT: u8 = 1;

pub(super) fn encode(
    class: Class,
    camera: &str,
    topic: &str,
    payload: &[u8],
    fallback: Option<&[u8]>,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        15 + camera.len() + topic.len() + payload.len() + fallback.map_or(0, <[u8]>::len),
    );
    v.push(FORMAT);
    v.push(match class {
        Class::Event => 0,
        Class::Snapshot => 1,
    });
    v.push(u8::from(fallback.is_some()));
    for s in [camera, topic] {
        v.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_le_bytes());
        v.extend_from_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
    }
    for b in [payload, fallback.unwrap_or_default()] {
        v.extend_from_slice(&(b.len() as u32).to_le_bytes());
        v.extend_from_slice(b);
    }
    v
}

pub(super) struct Decoded<'a> {
    pub class: Class,
    pub camera: &'a str,
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub fallback: Option<&'a [u8]>,
}

/// A length-prefixed field (`width` bytes, little endian) off the front of `b`.
fn take<'a>(b: &mut &'a [u8], width: usize) -> Option<&'a [u8]> {
    let mut n = [0u8; 8];
    n[..width].copy_from_slice(b.get(..width)?);
    let n = u64::from_le_bytes(n) as usize;
    let s = b.get(width..width.checked_add(n)?)?;
    *b = &b[width + n..];
    Some(s)
}

pub(super) fn decode(b: &[u8]) -> Option<Decoded<'_>> {
    let (&fmt, b) = b.split_first()?;
    let (&class, b) = b.split_first()?;
    let (&has_fb, mut b) = b.split_first()?;
    if fmt != FORMAT {
        return None;
    }
    let camera = std::str::from_utf8(take(&mut b, 2)?).ok()?;
    let topic = std::str::from_utf8(take(&mut b, 2)?).ok()?;
    let payload = take(&mut b, 4)?;
    let fallback = take(&mut b, 4)?;
    Some(Decoded {
        class: match class {
            0 => Class::Event,
            1 => Class::Snapshot,
            _ => return None,
        },
        camera,
        topic,
        payload,
        fallback: (has_fb == 1).then_some(fallback),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_round_trip() {
        let r = encode(Class::Event, "cam", "a/b", b"xyz", Some(b"fb"));
        let d = decode(&r).unwrap();
        assert_eq!(
            (d.class, d.camera, d.topic, d.payload, d.fallback),
            (Class::Event, "cam", "a/b", &b"xyz"[..], Some(&b"fb"[..]))
        );
        assert!(decode(&r[..r.len() - 1]).is_none());
        assert!(decode(&[]).is_none());
    }
}
