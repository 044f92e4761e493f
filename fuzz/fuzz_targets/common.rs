//! Turns fuzzer bytes into sizes, flags and floats. When the bytes run out
//! every read returns zero, so any input is a complete test case.

#![allow(dead_code)]

pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A value in `0..=max`.
    pub fn upto(&mut self, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let v = if max < 256 {
            self.u8() as usize
        } else {
            self.u16() as usize
        };
        v % (max + 1)
    }

    /// A float that is often special: NaN, ±Inf, ±MAX, ±0, subnormal, a
    /// probability-like value in 0..1, a "pixel" value, or raw bits.
    pub fn f32(&mut self) -> f32 {
        match self.u8() {
            0 => 0.0,
            1 => f32::NAN,
            2 => f32::INFINITY,
            3 => f32::NEG_INFINITY,
            4 => f32::MAX,
            5 => f32::MIN,
            6 => -0.0,
            7 => f32::MIN_POSITIVE / 4.0,
            8 => 1.0,
            9 => -1.0,
            b @ 10..=127 => (b - 10) as f32 / 117.0,
            b @ 128..=191 => (b as f32 - 160.0) * 8.0,
            _ => f32::from_bits(self.u32()),
        }
    }

    /// `n` floats (the declared tensor size).
    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.data
    }
}
