//! The ONNX messages convnet reads and writes, as plain structs over the wire format of
//! `interop::protobuf`. Only the fields a CNN's inference graph uses are kept; a reader skips
//! the others. Field numbers and types are those of the ONNX specification (IR version 8):
//!
//! ```text
//! ModelProto        ir_version 1 (int64), producer_name 2, producer_version 3, doc_string 6,
//!                   graph 7, opset_import 8 (OperatorSetIdProto), metadata_props 14
//! OperatorSetIdProto domain 1, version 2 (int64)
//! StringStringEntryProto key 1, value 2
//! GraphProto        node 1, name 2, initializer 5 (TensorProto), doc_string 10, input 11,
//!                   output 12, value_info 13 (ValueInfoProto)
//! NodeProto         input 1, output 2, name 3, op_type 4, attribute 5, doc_string 6, domain 7
//! AttributeProto    name 1, f 2 (float), i 3 (int64), s 4 (bytes), t 5 (TensorProto),
//!                   g 6 (GraphProto), floats 7, ints 8, strings 9, type 20 (AttributeType)
//! TensorProto       dims 1 (int64), data_type 2 (int32), segment 3, float_data 4,
//!                   int32_data 5, int64_data 7, name 8, raw_data 9, double_data 10,
//!                   data_location 14 (1 = EXTERNAL)
//! ValueInfoProto    name 1, type 2 (TypeProto)
//! TypeProto         tensor_type 1 (TypeProto.Tensor: elem_type 1, shape 2)
//! TensorShapeProto  dim 1 (Dimension: dim_value 1, dim_param 2)
//! ```
//!
//! Data types (TensorProto.DataType): FLOAT 1, INT32 6, INT64 7, DOUBLE 11. Attribute types:
//! FLOAT 1, INT 2, STRING 3, TENSOR 4, GRAPH 5, FLOATS 6, INTS 7, STRINGS 8.

use super::super::protobuf::{DecodeError, Reader, Writer};

pub const FLOAT: i32 = 1;
pub const INT32: i32 = 6;
pub const INT64: i32 = 7;
pub const DOUBLE: i32 = 11;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub ir_version: i64,
    pub producer_name: String,
    pub producer_version: String,
    pub doc_string: String,
    pub graph: Graph,
    /// (domain, version): "" is the default operator set.
    pub opset_import: Vec<(String, i64)>,
    pub metadata_props: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    pub initializers: Vec<Tensor>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttributeValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(Tensor),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    /// A type convnet has no use for (a graph, strings, sparse tensors...), by its number.
    Other(i32),
}

/// A tensor's values, converted on reading: float and double as f32, int32 and int64 as i64.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Float(Vec<f32>),
    Int64(Vec<i64>),
    /// Another element type, by its TensorProto.DataType number.
    Other(i32),
    /// Values kept in a file beside the model (data_location EXTERNAL), not read yet: see
    /// [`Tensor::read_external`].
    External(External),
}

/// Where a tensor's values lie outside the model file: `location` relative to the model's
/// folder, from byte `offset`, `length` bytes (to the end of the file when not given).
#[derive(Clone, Debug, PartialEq)]
pub struct External {
    pub data_type: i32,
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<i64>,
    pub data: TensorData,
}

/// A graph input or output: its element type and shape (a dimension is a number or a name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub elem_type: i32,
    pub shape: Vec<Dim>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Value(i64),
    Param(String),
}

impl Node {
    pub fn new(op_type: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: name.into(),
            op_type: op_type.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attributes: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, value: AttributeValue) -> Node {
        self.attributes.push(Attribute { name: name.into(), value });
        self
    }

    pub fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes.iter().find(|a| a.name == name).map(|a| &a.value)
    }
}

impl Tensor {
    pub fn float(name: &str, dims: &[usize], data: Vec<f32>) -> Tensor {
        Tensor { name: name.into(), dims: dims.iter().map(|&d| d as i64).collect(), data: TensorData::Float(data) }
    }

    pub fn int64(name: &str, dims: &[usize], data: Vec<i64>) -> Tensor {
        Tensor { name: name.into(), dims: dims.iter().map(|&d| d as i64).collect(), data: TensorData::Int64(data) }
    }
}

impl Tensor {
    /// Reads the values of a tensor kept in an external file, from `dir` (the model's folder).
    /// The location must be a plain relative path inside that folder; the bytes must be exactly
    /// the tensor's values.
    pub fn read_external(&mut self, dir: &std::path::Path) -> std::result::Result<(), String> {
        use std::io::{Read, Seek, SeekFrom};
        use std::path::Component;
        let TensorData::External(e) = &self.data else { return Ok(()) };
        let name = &self.name;
        let location = std::path::Path::new(&e.location);
        if !location.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("tensor \"{name}\": external data location \"{}\" must be a plain relative path", e.location));
        }
        let path = dir.join(location);
        let Some(width) = element_width(e.data_type) else {
            return Err(format!("tensor \"{name}\": external data of element type {} is not read", e.data_type));
        };
        let count = self.dims.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)));
        let bytes =
            count.and_then(|c| c.checked_mul(width)).ok_or_else(|| format!("tensor \"{name}\" has bad dimensions {:?}", self.dims))?;
        if e.length.is_some_and(|l| l != bytes as u64) {
            return Err(format!("tensor \"{name}\": external data of {} bytes, expected {bytes}", e.length.unwrap_or(0)));
        }
        let describe = |err: std::io::Error| format!("tensor \"{name}\": {}: {err}", path.display());
        let mut file = std::fs::File::open(&path).map_err(describe)?;
        file.seek(SeekFrom::Start(e.offset)).map_err(describe)?;
        // At most `bytes` bytes, however long the file claims to be.
        let mut raw = Vec::new();
        file.take(bytes as u64).read_to_end(&mut raw).map_err(describe)?;
        if raw.len() != bytes {
            return Err(format!("tensor \"{name}\": {} holds fewer than the {bytes} bytes expected", path.display()));
        }
        self.data = from_le_bytes(e.data_type, &raw);
        Ok(())
    }
}

/// Bytes per value of the element types convnet reads, None for the others.
fn element_width(data_type: i32) -> Option<usize> {
    match data_type {
        FLOAT | INT32 => Some(4),
        INT64 | DOUBLE => Some(8),
        _ => None,
    }
}

/// Little-endian values of a type [`element_width`] knows (`raw` a whole number of them):
/// float and double as f32, int32 and int64 as i64.
fn from_le_bytes(data_type: i32, raw: &[u8]) -> TensorData {
    let width = element_width(data_type).expect("a type convnet reads");
    let words = raw.chunks_exact(width);
    match data_type {
        FLOAT => TensorData::Float(words.map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect()),
        DOUBLE => TensorData::Float(words.map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32).collect()),
        INT32 => TensorData::Int64(words.map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("4")))).collect()),
        _ => TensorData::Int64(words.map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect()),
    }
}

// ---- writing ----

impl Model {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.int64(1, self.ir_version);
        w.string(2, &self.producer_name);
        w.string(3, &self.producer_version);
        if !self.doc_string.is_empty() {
            w.string(6, &self.doc_string);
        }
        w.message(7, |g| self.graph.encode(g));
        for (domain, version) in &self.opset_import {
            w.message(8, |m| {
                m.string(1, domain);
                m.int64(2, *version);
            });
        }
        for (key, value) in &self.metadata_props {
            w.message(14, |m| {
                m.string(1, key);
                m.string(2, value);
            });
        }
        w.into_bytes()
    }
}

impl Graph {
    fn encode(&self, w: &mut Writer) {
        for n in &self.nodes {
            w.message(1, |m| n.encode(m));
        }
        w.string(2, &self.name);
        for t in &self.initializers {
            w.message(5, |m| t.encode(m));
        }
        for v in &self.inputs {
            w.message(11, |m| v.encode(m));
        }
        for v in &self.outputs {
            w.message(12, |m| v.encode(m));
        }
    }
}

impl Node {
    fn encode(&self, w: &mut Writer) {
        for i in &self.inputs {
            w.string(1, i);
        }
        for o in &self.outputs {
            w.string(2, o);
        }
        w.string(3, &self.name);
        w.string(4, &self.op_type);
        for a in &self.attributes {
            w.message(5, |m| a.encode(m));
        }
        if !self.domain.is_empty() {
            w.string(7, &self.domain);
        }
    }
}

impl Attribute {
    fn encode(&self, w: &mut Writer) {
        w.string(1, &self.name);
        let kind = match &self.value {
            AttributeValue::Float(f) => {
                w.float(2, *f);
                1
            }
            AttributeValue::Int(i) => {
                w.int64(3, *i);
                2
            }
            AttributeValue::String(s) => {
                w.bytes(4, s);
                3
            }
            AttributeValue::Tensor(t) => {
                w.message(5, |m| t.encode(m));
                4
            }
            AttributeValue::Floats(v) => {
                v.iter().for_each(|f| w.float(7, *f));
                6
            }
            AttributeValue::Ints(v) => {
                v.iter().for_each(|i| w.int64(8, *i));
                7
            }
            AttributeValue::Other(kind) => *kind,
        };
        w.int64(20, i64::from(kind));
    }
}

impl Tensor {
    fn encode(&self, w: &mut Writer) {
        for d in &self.dims {
            w.int64(1, *d);
        }
        match &self.data {
            TensorData::Float(v) => {
                w.int64(2, i64::from(FLOAT));
                w.string(8, &self.name);
                w.bytes(9, &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
            }
            TensorData::Int64(v) => {
                w.int64(2, i64::from(INT64));
                w.string(8, &self.name);
                w.bytes(9, &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
            }
            TensorData::Other(t) => {
                w.int64(2, i64::from(*t));
                w.string(8, &self.name);
            }
            TensorData::External(e) => {
                w.int64(2, i64::from(e.data_type));
                w.string(8, &self.name);
                let mut entry = |k: &str, v: &str| {
                    w.message(13, |m| {
                        m.string(1, k);
                        m.string(2, v);
                    })
                };
                entry("location", &e.location);
                entry("offset", &e.offset.to_string());
                if let Some(len) = e.length {
                    entry("length", &len.to_string());
                }
                w.int64(14, 1);
            }
        }
    }
}

impl ValueInfo {
    fn encode(&self, w: &mut Writer) {
        w.string(1, &self.name);
        w.message(2, |ty| {
            ty.message(1, |tensor| {
                tensor.int64(1, i64::from(self.elem_type));
                tensor.message(2, |shape| {
                    for d in &self.shape {
                        shape.message(1, |dim| match d {
                            Dim::Value(v) => dim.int64(1, *v),
                            Dim::Param(p) => dim.string(2, p),
                        });
                    }
                });
            });
        });
    }
}

// ---- reading ----

/// Calls `each` on every field of the message `r`.
fn for_fields<'a>(
    mut r: Reader<'a>,
    mut each: impl FnMut(super::super::protobuf::Field<'a>) -> std::result::Result<(), DecodeError>,
) -> std::result::Result<(), DecodeError> {
    while let Some(f) = r.next_field()? {
        each(f)?;
    }
    Ok(())
}

/// A StringStringEntryProto (key 1, value 2): metadata_props, external_data.
fn string_pair(f: super::super::protobuf::Field) -> std::result::Result<(String, String), DecodeError> {
    let (mut key, mut value) = (String::new(), String::new());
    for_fields(f.message()?, |g| {
        match g.number {
            1 => key = g.string()?,
            2 => value = g.string()?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((key, value))
}

impl Model {
    /// Parses a whole .onnx file.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Model, DecodeError> {
        let mut m = Model::default();
        let mut graph = None;
        for_fields(Reader::new(bytes), |f| {
            match f.number {
                1 => m.ir_version = f.int64()?,
                2 => m.producer_name = f.string()?,
                3 => m.producer_version = f.string()?,
                6 => m.doc_string = f.string()?,
                7 => graph = Some(Graph::decode(f.message()?)?),
                8 => {
                    let (mut domain, mut version) = (String::new(), 0);
                    for_fields(f.message()?, |g| {
                        match g.number {
                            1 => domain = g.string()?,
                            2 => version = g.int64()?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    m.opset_import.push((domain, version));
                }
                14 => m.metadata_props.push(string_pair(f)?),
                _ => {}
            }
            Ok(())
        })?;
        m.graph = graph.ok_or_else(|| DecodeError { offset: 0, detail: "the model has no graph (not an ONNX model?)".into() })?;
        Ok(m)
    }
}

impl Graph {
    fn decode(r: Reader) -> std::result::Result<Graph, DecodeError> {
        let mut g = Graph::default();
        for_fields(r, |f| {
            match f.number {
                1 => g.nodes.push(Node::decode(f.message()?)?),
                2 => g.name = f.string()?,
                5 => g.initializers.push(Tensor::decode(f.message()?, f.offset)?),
                11 => g.inputs.push(ValueInfo::decode(f.message()?)?),
                12 => g.outputs.push(ValueInfo::decode(f.message()?)?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(g)
    }
}

impl Node {
    fn decode(r: Reader) -> std::result::Result<Node, DecodeError> {
        let mut n = Node::default();
        for_fields(r, |f| {
            match f.number {
                1 => n.inputs.push(f.string()?),
                2 => n.outputs.push(f.string()?),
                3 => n.name = f.string()?,
                4 => n.op_type = f.string()?,
                5 => n.attributes.push(Attribute::decode(f.message()?)?),
                7 => n.domain = f.string()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(n)
    }
}

impl Attribute {
    fn decode(r: Reader) -> std::result::Result<Attribute, DecodeError> {
        let mut name = String::new();
        let mut kind = None;
        let (mut f32v, mut i64v, mut bytes, mut tensor) = (None, None, None, None);
        let (mut floats, mut ints) = (Vec::new(), Vec::new());
        let mut other = None;
        for_fields(r, |f| {
            match f.number {
                1 => name = f.string()?,
                2 => f32v = Some(f.float()?),
                3 => i64v = Some(f.int64()?),
                4 => bytes = Some(f.bytes()?.to_vec()),
                5 => tensor = Some(Tensor::decode(f.message()?, f.offset)?),
                6 => other = Some(5),
                7 => f.push_floats(&mut floats)?,
                8 => f.push_int64s(&mut ints)?,
                9 => other = Some(8),
                20 => kind = Some(f.int32()?),
                _ => {}
            }
            Ok(())
        })?;
        // Old files leave `type` out: the field that is set says it.
        let value = match kind {
            Some(1) => AttributeValue::Float(f32v.unwrap_or(0.0)),
            Some(2) => AttributeValue::Int(i64v.unwrap_or(0)),
            Some(3) => AttributeValue::String(bytes.unwrap_or_default()),
            Some(4) => match tensor {
                Some(t) => AttributeValue::Tensor(t),
                None => AttributeValue::Other(4),
            },
            Some(6) => AttributeValue::Floats(floats),
            Some(7) => AttributeValue::Ints(ints),
            Some(k) => AttributeValue::Other(k),
            None => match (f32v, i64v, bytes, tensor) {
                (Some(v), ..) => AttributeValue::Float(v),
                (_, Some(v), ..) => AttributeValue::Int(v),
                (_, _, Some(v), _) => AttributeValue::String(v),
                (_, _, _, Some(t)) => AttributeValue::Tensor(t),
                _ if !floats.is_empty() => AttributeValue::Floats(floats),
                _ if !ints.is_empty() => AttributeValue::Ints(ints),
                _ => AttributeValue::Other(other.unwrap_or(0)),
            },
        };
        Ok(Attribute { name, value })
    }
}

impl Tensor {
    fn decode(r: Reader, offset: usize) -> std::result::Result<Tensor, DecodeError> {
        let error = |detail: String| DecodeError { offset, detail };
        let mut name = String::new();
        let mut dims = Vec::new();
        let mut data_type = 0;
        let mut raw: Option<&[u8]> = None;
        let (mut floats, mut ints) = (Vec::new(), Vec::new());
        let mut doubles = Vec::new();
        let mut external = false;
        let mut external_data: Vec<(String, String)> = Vec::new();
        let mut segmented = false;
        for_fields(r, |f| {
            match f.number {
                1 => f.push_int64s(&mut dims)?,
                2 => data_type = f.int32()?,
                3 => segmented = true,
                4 => f.push_floats(&mut floats)?,
                5 | 7 => f.push_int64s(&mut ints)?,
                8 => name = f.string()?,
                9 => raw = Some(f.bytes()?),
                10 => {
                    // Doubles: packed 8-byte values, or one per field.
                    match f.value {
                        super::super::protobuf::Value::Fixed64(v) => doubles.push(f64::from_bits(v)),
                        super::super::protobuf::Value::Bytes(b) if b.len() % 8 == 0 => {
                            doubles.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))))
                        }
                        _ => return Err(DecodeError { offset: f.offset, detail: "bad double_data".into() }),
                    }
                }
                13 => external_data.push(string_pair(f)?),
                14 => external = f.int32()? == 1,
                _ => {}
            }
            Ok(())
        })?;
        if external {
            let get = |k: &str| external_data.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
            let number = |k: &str| -> std::result::Result<Option<u64>, DecodeError> {
                get(k)
                    .map(|v| v.parse::<u64>().map_err(|_| error(format!("tensor \"{name}\": external data {k} \"{v}\" is not a number"))))
                    .transpose()
            };
            let location =
                get("location").ok_or_else(|| error(format!("tensor \"{name}\" keeps its data in an external file but names none")))?;
            let ext =
                External { data_type, location: location.to_string(), offset: number("offset")?.unwrap_or(0), length: number("length")? };
            return Ok(Tensor { name, dims, data: TensorData::External(ext) });
        }
        if segmented {
            return Err(error(format!("tensor \"{name}\" is segmented, which convnet does not read")));
        }
        if let Some(d) = dims.iter().find(|&&d| d < 0) {
            return Err(error(format!("tensor \"{name}\" has a negative dimension {d}")));
        }
        let count = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
            .ok_or_else(|| error(format!("tensor \"{name}\" has dimensions {dims:?} whose product overflows")))?;
        let data = match (element_width(data_type), raw) {
            (Some(width), Some(raw)) => {
                if Some(raw.len()) != count.checked_mul(width) {
                    return Err(error(format!(
                        "tensor \"{name}\" of dimensions {dims:?} has {} bytes of raw data, expected {count} values of {width} bytes",
                        raw.len()
                    )));
                }
                from_le_bytes(data_type, raw)
            }
            (_, None) if data_type == FLOAT => TensorData::Float(floats),
            (_, None) if data_type == DOUBLE => TensorData::Float(doubles.into_iter().map(|v| v as f32).collect()),
            (_, None) if data_type == INT32 || data_type == INT64 => TensorData::Int64(ints),
            _ => TensorData::Other(data_type),
        };
        let len = match &data {
            TensorData::Float(v) => Some(v.len()),
            TensorData::Int64(v) => Some(v.len()),
            TensorData::Other(_) | TensorData::External(_) => None,
        };
        if let Some(len) = len.filter(|&l| l != count) {
            return Err(error(format!("tensor \"{name}\" of dimensions {dims:?} holds {len} values, expected {count}")));
        }
        Ok(Tensor { name, dims, data })
    }
}

impl ValueInfo {
    fn decode(r: Reader) -> std::result::Result<ValueInfo, DecodeError> {
        let mut v = ValueInfo::default();
        for_fields(r, |f| {
            match f.number {
                1 => v.name = f.string()?,
                2 => for_fields(f.message()?, |ty| {
                    if ty.number == 1 {
                        for_fields(ty.message()?, |tensor| {
                            match tensor.number {
                                1 => v.elem_type = tensor.int32()?,
                                2 => for_fields(tensor.message()?, |shape| {
                                    if shape.number == 1 {
                                        let mut dim = Dim::Param(String::new());
                                        for_fields(shape.message()?, |d| {
                                            match d.number {
                                                1 => dim = Dim::Value(d.int64()?),
                                                2 => dim = Dim::Param(d.string()?),
                                                _ => {}
                                            }
                                            Ok(())
                                        })?;
                                        v.shape.push(dim);
                                    }
                                    Ok(())
                                })?,
                                _ => {}
                            }
                            Ok(())
                        })?;
                    }
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Model {
        Model {
            ir_version: 8,
            producer_name: "convnet".into(),
            producer_version: "0.1.0".into(),
            doc_string: "a test".into(),
            opset_import: vec![(String::new(), 17)],
            metadata_props: vec![("k".into(), "v".into())],
            graph: Graph {
                name: "g".into(),
                nodes: vec![Node::new("Conv", "conv0", &["x", "w"], &["y"])
                    .with("pads", AttributeValue::Ints(vec![1, 1, 1, 1]))
                    .with("alpha", AttributeValue::Float(0.5))
                    .with("mode", AttributeValue::String(b"x".to_vec()))
                    .with("n", AttributeValue::Int(-3))
                    .with("fs", AttributeValue::Floats(vec![1.0, 2.0]))
                    .with("t", AttributeValue::Tensor(Tensor::int64("s", &[2], vec![1, -1])))],
                initializers: vec![Tensor::float("w", &[1, 1, 2, 2], vec![1.0, -2.0, 3.5, 0.0])],
                inputs: vec![ValueInfo { name: "x".into(), elem_type: FLOAT, shape: vec![Dim::Param("N".into()), Dim::Value(1)] }],
                outputs: vec![ValueInfo { name: "y".into(), elem_type: FLOAT, shape: vec![] }],
            },
        }
    }

    #[test]
    fn a_model_reads_back_as_written() {
        let m = sample();
        assert_eq!(Model::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn tensors_in_typed_fields_and_other_types_read() {
        // A float tensor in float_data (packed), an int32 one in int32_data, a uint8 one.
        let mut w = Writer::new();
        w.int64(1, 2);
        w.int64(2, i64::from(FLOAT));
        w.bytes(4, &[1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
        let bytes = w.into_bytes();
        let t = Tensor::decode(Reader::new(&bytes), 0).unwrap();
        assert_eq!(t.data, TensorData::Float(vec![1.0, 2.0]));
        let mut w = Writer::new();
        w.int64(1, 1);
        w.int64(2, i64::from(INT32));
        w.int64(5, -4);
        let bytes = w.into_bytes();
        assert_eq!(Tensor::decode(Reader::new(&bytes), 0).unwrap().data, TensorData::Int64(vec![-4]));
        let mut w = Writer::new();
        w.int64(2, 2);
        let bytes = w.into_bytes();
        assert_eq!(Tensor::decode(Reader::new(&bytes), 0).unwrap().data, TensorData::Other(2));
    }

    #[test]
    fn attributes_without_a_type_and_unpacked_doubles_read() {
        // Old files leave AttributeProto.type out: the field that is set says it.
        for (field, expected) in [(2, AttributeValue::Float(1.5)), (3, AttributeValue::Int(-2))] {
            let mut w = Writer::new();
            w.string(1, "a");
            if field == 2 {
                w.float(2, 1.5);
            } else {
                w.int64(3, -2);
            }
            let bytes = w.into_bytes();
            assert_eq!(Attribute::decode(Reader::new(&bytes)).unwrap().value, expected);
        }
        let mut w = Writer::new();
        w.string(1, "s");
        w.bytes(4, b"text");
        let bytes = w.into_bytes();
        assert_eq!(Attribute::decode(Reader::new(&bytes)).unwrap().value, AttributeValue::String(b"text".to_vec()));
        // DOUBLE values, one 8-byte field each (unpacked), become f32.
        let mut w = Writer::new();
        w.int64(1, 2);
        w.int64(2, i64::from(DOUBLE));
        for v in [0.25f64, -3.0] {
            w.key_fixed64(10, v.to_bits());
        }
        let bytes = w.into_bytes();
        assert_eq!(Tensor::decode(Reader::new(&bytes), 0).unwrap().data, TensorData::Float(vec![0.25, -3.0]));
    }

    #[test]
    fn a_tensor_whose_data_does_not_fit_its_dims_is_refused() {
        let mut t = Tensor::float("w", &[2, 2], vec![1.0; 4]);
        t.dims = vec![2, 3];
        let mut w = Writer::new();
        t.encode(&mut w);
        let bytes = w.into_bytes();
        let err = Tensor::decode(Reader::new(&bytes), 9).unwrap_err();
        assert!(err.detail.contains("16 bytes of raw data, expected 6 values"), "{err}");
        assert_eq!(err.offset, 9);
        let mut w = Writer::new();
        w.int64(1, -1);
        let bytes = w.into_bytes();
        assert!(Tensor::decode(Reader::new(&bytes), 0).unwrap_err().detail.contains("negative dimension"));
        let mut w = Writer::new();
        w.int64(2, i64::from(FLOAT));
        w.int64(14, 1);
        let bytes = w.into_bytes();
        assert!(Tensor::decode(Reader::new(&bytes), 0).unwrap_err().detail.contains("names none"));
    }

    #[test]
    fn external_data_is_read_from_beside_the_model_and_only_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<u8> = [9.0f32, 1.0, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join("w.bin"), &values).unwrap();
        let external = |location: &str, offset: u64, length: Option<u64>| Tensor {
            name: "w".into(),
            dims: vec![3],
            data: TensorData::External(External { data_type: FLOAT, location: location.into(), offset, length }),
        };
        let mut t = external("w.bin", 4, Some(12));
        // Written and read back as external, then resolved.
        let mut w = Writer::new();
        t.encode(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(Tensor::decode(Reader::new(&bytes), 0).unwrap(), t);
        t.read_external(dir.path()).unwrap();
        assert_eq!(t.data, TensorData::Float(vec![1.0, 2.0, 3.0]));
        assert!(external("../w.bin", 0, None).read_external(dir.path()).unwrap_err().contains("plain relative path"));
        assert!(external("/etc/passwd", 0, None).read_external(dir.path()).unwrap_err().contains("plain relative path"));
        assert!(external("w.bin", 8, None).read_external(dir.path()).unwrap_err().contains("fewer than the 12 bytes"));
        assert!(external("w.bin", 0, Some(16)).read_external(dir.path()).unwrap_err().contains("16 bytes, expected 12"));
        assert!(external("missing.bin", 0, None).read_external(dir.path()).unwrap_err().contains("missing.bin"));
    }

    #[test]
    fn a_file_without_a_graph_is_refused() {
        let mut w = Writer::new();
        w.int64(1, 8);
        assert!(Model::decode(&w.into_bytes()).unwrap_err().detail.contains("no graph"));
    }
}
