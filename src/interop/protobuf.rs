//! The protobuf wire format, the part ONNX files use: a message is a sequence of fields, each a
//! key `(field number << 3) | wire type` as a varint, then the value:
//!
//! ```text
//!   wire type 0  varint            int32, int64, uint64, enum, bool
//!   wire type 1  8 bytes, LE       fixed64, double
//!   wire type 2  varint length, then that many bytes: string, bytes, a nested message,
//!                                  or a packed run of repeated scalars
//!   wire type 5  4 bytes, LE       fixed32, float
//! ```
//!
//! Varints hold 7 bits per byte, least significant group first, the top bit set on every byte
//! but the last; a negative int64 is its two's complement as a 10-byte varint. Fields may come
//! in any order and a reader skips the numbers it does not know. Groups (wire types 3 and 4)
//! are refused: no ONNX message has one.
//!
//! Written by hand rather than generated (prost needs `protoc` or protox at build time for the
//! .proto): the subset is small, and a hand-written reader can bound every length by the bytes
//! that are left, so a hostile file gets an error naming the offset, never an allocation it
//! asked for.

use std::fmt;

/// A malformed message: what was wrong and at which byte offset of the buffer being read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub detail: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.detail)
    }
}

impl std::error::Error for DecodeError {}

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

/// Builds one message. Nested messages are written into their own writer and added with
/// [`Writer::message`], which prefixes their length.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    /// int64, int32 and enum fields: a negative value is written as its 64-bit two's complement.
    pub fn int64(&mut self, field: u32, v: i64) {
        self.key(field, VARINT);
        self.varint(v as u64);
    }

    /// A fixed64 or double field (ONNX writes doubles this way).
    pub fn key_fixed64(&mut self, field: u32, bits: u64) {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&bits.to_le_bytes());
    }

    pub fn float(&mut self, field: u32, v: f32) {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, field: u32, v: &[u8]) {
        self.key(field, LENGTH_DELIMITED);
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    pub fn string(&mut self, field: u32, v: &str) {
        self.bytes(field, v.as_bytes());
    }

    /// A nested message, built by `build` on a writer of its own.
    pub fn message(&mut self, field: u32, build: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::new();
        build(&mut inner);
        self.bytes(field, &inner.buf);
    }
}

/// One field's value as it lies on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Varint(_) => "a varint",
            Value::Fixed64(_) => "a 64-bit value",
            Value::Bytes(_) => "a length-delimited value",
            Value::Fixed32(_) => "a 32-bit value",
        }
    }
}

/// Reads the fields of one message in order.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the outermost buffer, so errors name the byte in the file.
    base: usize,
}

/// One field: its number, its value, and the file offset of its value (for errors).
#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub offset: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0, base: 0 }
    }

    fn error(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError { offset: self.base + self.pos, detail: detail.into() }
    }

    fn read_varint(&mut self) -> std::result::Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.error("the message ends inside a varint"));
            };
            self.pos += 1;
            // The tenth byte may only hold the 64th bit.
            if i == 9 && b > 1 {
                return Err(self.error("a varint longer than 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.error("a varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], DecodeError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.error(format!("{what} of {n} bytes, but only {left} are left")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next field, or None at the end of the message.
    pub fn next_field(&mut self) -> std::result::Result<Option<Field<'a>>, DecodeError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let key = self.read_varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| self.error(format!("field number {} is too large", key >> 3)))?;
        if number == 0 {
            return Err(self.error("field number 0 (not a protobuf message?)"));
        }
        let offset = self.base + self.pos;
        let value = match (key & 7) as u32 {
            VARINT => Value::Varint(self.read_varint()?),
            FIXED64 => Value::Fixed64(u64::from_le_bytes(self.take(8, "a 64-bit value")?.try_into().expect("8 bytes"))),
            LENGTH_DELIMITED => {
                let n = self.read_varint()?;
                let n = usize::try_from(n).map_err(|_| self.error(format!("a length of {n} bytes")))?;
                Value::Bytes(self.take(n, "a length-delimited value")?)
            }
            FIXED32 => Value::Fixed32(u32::from_le_bytes(self.take(4, "a 32-bit value")?.try_into().expect("4 bytes"))),
            wire => return Err(self.error(format!("field {number} has wire type {wire}, which ONNX does not use"))),
        };
        Ok(Some(Field { number, value, offset }))
    }
}

impl<'a> Field<'a> {
    fn error(&self, detail: String) -> DecodeError {
        DecodeError { offset: self.offset, detail }
    }

    fn mismatch(&self, expected: &str) -> DecodeError {
        self.error(format!("field {} holds {}, expected {expected}", self.number, self.value.kind()))
    }

    pub fn int64(&self) -> std::result::Result<i64, DecodeError> {
        match self.value {
            Value::Varint(v) => Ok(v as i64),
            _ => Err(self.mismatch("a varint")),
        }
    }

    /// An int32 or enum field (written as a sign-extended varint).
    pub fn int32(&self) -> std::result::Result<i32, DecodeError> {
        let v = self.int64()?;
        i32::try_from(v).map_err(|_| self.error(format!("field {} holds {v}, which does not fit an int32", self.number)))
    }

    pub fn float(&self) -> std::result::Result<f32, DecodeError> {
        match self.value {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(self.mismatch("a float")),
        }
    }

    pub fn bytes(&self) -> std::result::Result<&'a [u8], DecodeError> {
        match self.value {
            Value::Bytes(b) => Ok(b),
            _ => Err(self.mismatch("bytes")),
        }
    }

    pub fn string(&self) -> std::result::Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.error(format!("field {} is not valid UTF-8", self.number)))
    }

    /// A nested message's reader; its errors give offsets in the outer buffer.
    pub fn message(&self) -> std::result::Result<Reader<'a>, DecodeError> {
        Ok(Reader { buf: self.bytes()?, pos: 0, base: self.offset + self.length_prefix() })
    }

    /// The bytes taken by the length varint before a length-delimited value.
    fn length_prefix(&self) -> usize {
        match self.value {
            Value::Bytes(b) => {
                let mut n = b.len() as u64;
                let mut bytes = 1;
                while n >= 0x80 {
                    n >>= 7;
                    bytes += 1;
                }
                bytes
            }
            _ => 0,
        }
    }

    /// A repeated int64 field, one element (unpacked) or a packed run, appended to `out`.
    pub fn push_int64s(&self, out: &mut Vec<i64>) -> std::result::Result<(), DecodeError> {
        match self.value {
            Value::Varint(v) => out.push(v as i64),
            Value::Bytes(_) => {
                let mut r = self.message()?;
                while r.pos < r.buf.len() {
                    out.push(r.read_varint()? as i64);
                }
            }
            _ => return Err(self.mismatch("varints")),
        }
        Ok(())
    }

    /// A repeated float field, one element (unpacked) or a packed run, appended to `out`.
    pub fn push_floats(&self, out: &mut Vec<f32>) -> std::result::Result<(), DecodeError> {
        match self.value {
            Value::Fixed32(v) => out.push(f32::from_bits(v)),
            Value::Bytes(b) => {
                if b.len() % 4 != 0 {
                    return Err(self.error(format!("a packed float field of {} bytes, not a multiple of 4", b.len())));
                }
                out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))));
            }
            _ => return Err(self.mismatch("floats")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known encodings from the protobuf documentation's examples.
    #[test]
    fn varints_encode_as_documented() {
        let mut w = Writer::new();
        w.int64(1, 150);
        assert_eq!(w.into_bytes(), [0x08, 0x96, 0x01]);
        let mut w = Writer::new();
        w.string(2, "testing");
        assert_eq!(w.into_bytes(), [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        let mut w = Writer::new();
        w.int64(1, -1);
        assert_eq!(w.into_bytes(), [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        let mut w = Writer::new();
        w.float(3, 1.0);
        assert_eq!(w.into_bytes(), [0x1d, 0x00, 0x00, 0x80, 0x3f]);
    }

    #[test]
    fn fields_read_back_in_order() {
        let mut w = Writer::new();
        w.int64(1, -7);
        w.float(2, 2.5);
        w.message(3, |m| {
            m.string(1, "inner");
            m.int64(2, 300);
        });
        w.int64(4, i64::MAX);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        let f = r.next_field().unwrap().unwrap();
        assert_eq!((f.number, f.int64().unwrap()), (1, -7));
        let f = r.next_field().unwrap().unwrap();
        assert_eq!((f.number, f.float().unwrap()), (2, 2.5));
        let f = r.next_field().unwrap().unwrap();
        assert_eq!(f.number, 3);
        let mut inner = f.message().unwrap();
        assert_eq!(inner.next_field().unwrap().unwrap().string().unwrap(), "inner");
        assert_eq!(inner.next_field().unwrap().unwrap().int64().unwrap(), 300);
        assert!(inner.next_field().unwrap().is_none());
        assert_eq!(r.next_field().unwrap().unwrap().int64().unwrap(), i64::MAX);
        assert!(r.next_field().unwrap().is_none());
    }

    #[test]
    fn packed_and_unpacked_repeated_fields_both_read() {
        // ints 1, 300 packed: length 3, then 0x01, 0xac 0x02.
        let bytes = [0x0a, 0x03, 0x01, 0xac, 0x02, 0x08, 0x05];
        let mut r = Reader::new(&bytes);
        let mut out = Vec::new();
        while let Some(f) = r.next_field().unwrap() {
            f.push_int64s(&mut out).unwrap();
        }
        assert_eq!(out, [1, 300, 5]);
        let mut w = Writer::new();
        w.bytes(4, &[1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
        w.float(4, 7.0);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        let mut floats = Vec::new();
        while let Some(f) = r.next_field().unwrap() {
            f.push_floats(&mut floats).unwrap();
        }
        assert_eq!(floats, [1.5, -2.0, 7.0]);
    }

    #[test]
    fn malformed_input_gets_an_error_with_the_offset() {
        // A length of 100 with 2 bytes left.
        let err = Reader::new(&[0x0a, 0x64, 0x01, 0x02]).next_field().unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(err.detail.contains("100 bytes, but only 2"), "{err}");
        // A varint cut off.
        let err = Reader::new(&[0x08, 0x80]).next_field().unwrap_err();
        assert!(err.detail.contains("ends inside a varint"), "{err}");
        // Eleven continuation bytes.
        let err = Reader::new(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).next_field().unwrap_err();
        assert!(err.detail.contains("longer than 64 bits"), "{err}");
        // A group.
        let err = Reader::new(&[0x0b]).next_field().unwrap_err();
        assert!(err.detail.contains("wire type 3"), "{err}");
        // Field number 0.
        let err = Reader::new(&[0x00, 0x00]).next_field().unwrap_err();
        assert!(err.detail.contains("field number 0"), "{err}");
        // A type mismatch names the field.
        let bytes = [0x08, 0x01];
        let f = Reader::new(&bytes).next_field().unwrap().unwrap();
        assert!(f.string().unwrap_err().detail.contains("field 1 holds a varint"));
        // Offsets inside a nested message count from the start of the file.
        let mut w = Writer::new();
        w.int64(1, 1);
        w.bytes(2, &[0x0a, 0x05]);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        r.next_field().unwrap();
        let f = r.next_field().unwrap().unwrap();
        let err = f.message().unwrap().next_field().unwrap_err();
        assert_eq!(err.offset, 6);
    }
}
