//! Flattens a pg_query parse tree into a generic, pre-order list of items so
//! the policy can visit every node of every kind.
//!
//! Input: the parse tree of untrusted client SQL, as events from the C
//! writer ([`super::flat`], which visits every field of every node kind with
//! libpg_query's generated walker) fed to a [`Writer`]. Tests also build
//! trees from pg_query's protobuf types through their `serde::Serialize`
//! impl, to check the two agree. Nothing is kept of scalar defaults (`0`,
//! `false`, `""`, `None`) or source positions, which carry no policy meaning.

#[cfg(test)]
use serde::ser::{self, Serialize};
use std::fmt;

/// What one item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A parse node, by its libpg_query type name (`FuncCall`, `AConst`,
    /// `String`, ...; pg_query's Rust types differ only in case, such as
    /// `SQLValueFunction` / `SqlValueFunction`).
    Struct(&'static str),
    /// A repeated field.
    Seq,
    /// A string value: a byte range into [`Tree::text`].
    Str(u32, u32),
    /// An integer (protobuf enums arrive here as their number).
    Int(i64),
    /// A `true` boolean (`false` is a default and is not stored).
    True,
}

/// One node, list or scalar of the flattened tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item {
    /// The field of the parent this item sits in ("" for list elements).
    pub field: &'static str,
    /// What the item is.
    pub kind: Kind,
    /// Index of the parent item (`u32::MAX` for a root).
    pub parent: u32,
    /// Index one past the last descendant: the subtree is `self..end`.
    pub end: u32,
}

/// A parse tree in pre-order. Every protobuf message of the input is one
/// [`Kind::Struct`] item here, so a plain loop over `items` visits them all.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    pub items: Vec<Item>,
    text: String,
}

/// Why a tree could not be flattened (never expected; fail closed).
#[derive(Debug)]
pub(crate) struct FlattenError(String);

const TOO_LARGE: &str = "parse tree too large";

impl FlattenError {
    /// Whether the tree hit [`MAX_ITEMS`].
    pub(crate) fn is_too_large(&self) -> bool {
        self.0 == TOO_LARGE
    }
}

impl fmt::Display for FlattenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlattenError {}

#[cfg(test)]
impl ser::Error for FlattenError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FlattenError(msg.to_string())
    }
}

/// Wrapper messages that carry no meaning of their own: `Node` holds exactly
/// one oneof, which is emitted in its place.
#[cfg(test)]
const TRANSPARENT: &[&str] = &["Node"];

/// Integer fields that only record source positions.
const POSITION_FIELDS: &[&str] = &["location", "stmt_location", "stmt_len", "payload_location"];

/// Most items a tree may have: bounds the work done for one statement.
pub(crate) const MAX_ITEMS: usize = 1 << 20;

impl Tree {
    /// Flattens `value` (a statement node or any protobuf message).
    #[cfg(test)]
    pub(crate) fn build<T: Serialize + ?Sized>(value: &T) -> Result<Tree, FlattenError> {
        let mut b = Builder {
            tree: Tree {
                items: Vec::with_capacity(128),
                text: String::with_capacity(64),
            },
            stack: Vec::with_capacity(32),
            field: "",
        };
        value.serialize(&mut b)?;
        if !b.stack.is_empty() {
            return Err(FlattenError("unbalanced tree".into()));
        }
        Ok(b.tree)
    }

    /// The string value of item `i`, if it is a string.
    pub(crate) fn str_at(&self, i: usize) -> Option<&str> {
        match self.items.get(i)?.kind {
            Kind::Str(start, len) => {
                let start = usize::try_from(start).ok()?;
                let end = start.checked_add(usize::try_from(len).ok()?)?;
                self.text.get(start..end)
            }
            _ => None,
        }
    }

    /// The struct type name of item `i`.
    pub(crate) fn ty(&self, i: usize) -> Option<&'static str> {
        match self.items.get(i)?.kind {
            Kind::Struct(ty) => Some(ty),
            _ => None,
        }
    }

    /// The parent of item `i`.
    pub(crate) fn parent(&self, i: usize) -> Option<usize> {
        let p = self.items.get(i)?.parent;
        if p == u32::MAX {
            None
        } else {
            usize::try_from(p).ok()
        }
    }

    /// Direct children of item `i`, in field order.
    pub(crate) fn children(&self, i: usize) -> Children<'_> {
        let end = self
            .items
            .get(i)
            .and_then(|it| usize::try_from(it.end).ok())
            .unwrap_or(0);
        Children {
            tree: self,
            next: i.saturating_add(1),
            end,
        }
    }

    /// The direct child of item `i` stored in field `name`.
    pub(crate) fn field(&self, i: usize, name: &str) -> Option<usize> {
        self.children(i)
            .find(|&c| self.items.get(c).is_some_and(|it| it.field == name))
    }

    /// The integer in field `name` of item `i` (0 when absent, as protobuf).
    pub(crate) fn int_field(&self, i: usize, name: &str) -> i64 {
        match self.field(i, name).and_then(|c| self.items.get(c)) {
            Some(Item { kind: Kind::Int(v), .. }) => *v,
            _ => 0,
        }
    }

    /// Whether the bool in field `name` of item `i` is true.
    pub(crate) fn bool_field(&self, i: usize, name: &str) -> bool {
        matches!(
            self.field(i, name).and_then(|c| self.items.get(c)),
            Some(Item { kind: Kind::True, .. })
        )
    }

    /// The string in field `name` of item `i` ("" when absent, as protobuf).
    pub(crate) fn str_field(&self, i: usize, name: &str) -> &str {
        self.field(i, name).and_then(|c| self.str_at(c)).unwrap_or("")
    }

    /// For a `String` node (an identifier part or a string constant), its text.
    pub(crate) fn string_node(&self, i: usize) -> Option<&str> {
        if self.ty(i) != Some("String") {
            return None;
        }
        Some(self.str_field(i, "sval"))
    }

    /// The elements of the list in field `name` of item `i`.
    pub(crate) fn list(&self, i: usize, name: &str) -> Children<'_> {
        match self.field(i, name) {
            Some(c) if matches!(self.items.get(c).map(|it| it.kind), Some(Kind::Seq)) => self.children(c),
            _ => Children {
                tree: self,
                next: 0,
                end: 0,
            },
        }
    }
}

/// Iterator over the direct children of an item.
pub(crate) struct Children<'a> {
    tree: &'a Tree,
    next: usize,
    end: usize,
}

impl Iterator for Children<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.next >= self.end {
            return None;
        }
        let cur = self.next;
        let item = self.tree.items.get(cur)?;
        self.next = usize::try_from(item.end).ok()?;
        Some(cur)
    }
}

/// Builds one [`Tree`] from open / close / scalar events, in pre-order.
pub(crate) struct Writer {
    b: Builder,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer {
            b: Builder {
                tree: Tree {
                    items: Vec::with_capacity(128),
                    text: String::with_capacity(64),
                },
                stack: Vec::with_capacity(32),
                field: "",
            },
        }
    }

    /// Containers open right now.
    pub(crate) fn depth(&self) -> usize {
        self.b.stack.len()
    }

    /// Opens a node of type `ty` stored in `field` of the current container.
    pub(crate) fn open_struct(&mut self, field: &'static str, ty: &'static str) -> Result<(), FlattenError> {
        self.b.field = field;
        self.b.open(Kind::Struct(ty))
    }

    /// Opens a list stored in `field`.
    pub(crate) fn open_seq(&mut self, field: &'static str) -> Result<(), FlattenError> {
        self.b.field = field;
        self.b.open(Kind::Seq)
    }

    /// Closes the innermost open node or list.
    pub(crate) fn close(&mut self) -> Result<(), FlattenError> {
        self.b.close()
    }

    /// A string value (empty strings are defaults and are not stored).
    pub(crate) fn str(&mut self, field: &'static str, v: &str) -> Result<(), FlattenError> {
        self.b.field = field;
        self.b.string(v)
    }

    /// An integer (zero and source positions are not stored).
    pub(crate) fn int(&mut self, field: &'static str, v: i64) -> Result<(), FlattenError> {
        self.b.field = field;
        self.b.int(v)
    }

    /// A `true` boolean.
    pub(crate) fn truth(&mut self, field: &'static str) -> Result<(), FlattenError> {
        self.b.field = field;
        self.b.push(Kind::True).map(|_| ())
    }

    /// The finished tree; every container must be closed.
    pub(crate) fn finish(self) -> Result<Tree, FlattenError> {
        if !self.b.stack.is_empty() {
            return Err(FlattenError("unbalanced tree".into()));
        }
        Ok(self.b.tree)
    }
}

struct Builder {
    tree: Tree,
    /// Open containers: index of the item, or `None` for a transparent one.
    stack: Vec<Option<u32>>,
    /// The field name the next value is stored under.
    field: &'static str,
}

impl Builder {
    fn parent(&self) -> u32 {
        self.stack.iter().rev().find_map(|s| *s).unwrap_or(u32::MAX)
    }

    fn push(&mut self, kind: Kind) -> Result<u32, FlattenError> {
        if self.tree.items.len() >= MAX_ITEMS {
            return Err(FlattenError(TOO_LARGE.into()));
        }
        let idx = u32::try_from(self.tree.items.len()).map_err(|_| FlattenError(TOO_LARGE.into()))?;
        let end = idx.saturating_add(1);
        let parent = self.parent();
        self.tree.items.push(Item {
            field: self.field,
            kind,
            parent,
            end,
        });
        Ok(idx)
    }

    fn open(&mut self, kind: Kind) -> Result<(), FlattenError> {
        let idx = self.push(kind)?;
        self.stack.push(Some(idx));
        Ok(())
    }

    fn close(&mut self) -> Result<(), FlattenError> {
        match self.stack.pop() {
            Some(Some(idx)) => {
                let end = u32::try_from(self.tree.items.len()).map_err(|_| FlattenError(TOO_LARGE.into()))?;
                let i = usize::try_from(idx).map_err(|_| FlattenError("index".into()))?;
                if let Some(item) = self.tree.items.get_mut(i) {
                    item.end = end;
                }
                Ok(())
            }
            Some(None) => Ok(()),
            None => Err(FlattenError("unbalanced tree".into())),
        }
    }

    fn int(&mut self, v: i64) -> Result<(), FlattenError> {
        if v == 0 || POSITION_FIELDS.contains(&self.field) {
            return Ok(());
        }
        self.push(Kind::Int(v)).map(|_| ())
    }

    fn string(&mut self, v: &str) -> Result<(), FlattenError> {
        if v.is_empty() {
            return Ok(());
        }
        let start = u32::try_from(self.tree.text.len()).map_err(|_| FlattenError(TOO_LARGE.into()))?;
        let len = u32::try_from(v.len()).map_err(|_| FlattenError(TOO_LARGE.into()))?;
        self.tree.text.push_str(v);
        self.push(Kind::Str(start, len)).map(|_| ())
    }
}

#[cfg(test)]
type R = Result<(), FlattenError>;

#[cfg(test)]
impl<'a> ser::Serializer for &'a mut Builder {
    type Ok = ();
    type Error = FlattenError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> R {
        if v {
            self.push(Kind::True)?;
        }
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> R {
        self.int(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> R {
        self.int(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> R {
        self.int(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> R {
        self.int(v)
    }
    fn serialize_u8(self, v: u8) -> R {
        self.int(i64::from(v))
    }
    fn serialize_u16(self, v: u16) -> R {
        self.int(i64::from(v))
    }
    fn serialize_u32(self, v: u32) -> R {
        self.int(i64::from(v))
    }
    fn serialize_u64(self, v: u64) -> R {
        self.int(i64::try_from(v).unwrap_or(i64::MAX))
    }
    fn serialize_f32(self, _v: f32) -> R {
        Ok(())
    }
    fn serialize_f64(self, _v: f64) -> R {
        Ok(())
    }
    fn serialize_char(self, v: char) -> R {
        let mut buf = [0u8; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }
    fn serialize_str(self, v: &str) -> R {
        self.string(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> R {
        // No protobuf field of pg_query is `bytes`; keep any as lossy text so
        // nothing is silently dropped.
        self.serialize_str(&String::from_utf8_lossy(v))
    }
    fn serialize_none(self) -> R {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_unit(self) -> R {
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> R {
        Ok(())
    }
    fn serialize_unit_variant(self, _n: &'static str, _i: u32, variant: &'static str) -> R {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _n: &'static str, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &T,
    ) -> R {
        // Oneofs: the payload message carries its own type name.
        value.serialize(self)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, FlattenError> {
        self.open(Kind::Seq)?;
        Ok(Compound { b: self, restore: None })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, FlattenError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>, FlattenError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, FlattenError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, FlattenError> {
        self.open(Kind::Seq)?;
        Ok(Compound { b: self, restore: None })
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Compound<'a>, FlattenError> {
        if TRANSPARENT.contains(&name) {
            let outer = self.field;
            self.stack.push(None);
            return Ok(Compound {
                b: self,
                restore: Some(outer),
            });
        }
        self.open(Kind::Struct(name))?;
        Ok(Compound { b: self, restore: None })
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _i: u32,
        _v: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, FlattenError> {
        self.serialize_struct(name, len)
    }
}

#[cfg(test)]
/// An open container. `restore` is set for a transparent wrapper: its single
/// field is stored under the wrapper's own field name.
pub(crate) struct Compound<'a> {
    b: &'a mut Builder,
    restore: Option<&'static str>,
}

#[cfg(test)]
impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.b.field = "";
        value.serialize(&mut *self.b)
    }
    fn named<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
        self.b.field = self.restore.unwrap_or(key);
        value.serialize(&mut *self.b)
    }
    fn finish(self) -> R {
        self.b.close()
    }
}

#[cfg(test)]
impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.element(value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

#[cfg(test)]
impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.element(value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

#[cfg(test)]
impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.element(value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

#[cfg(test)]
impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.element(value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

#[cfg(test)]
impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        self.element(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.element(value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

#[cfg(test)]
impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
        self.named(key, value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

#[cfg(test)]
impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = FlattenError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
        self.named(key, value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_reaches_function_inside_values_list() {
        let parsed = pg_query::parse("VALUES ((SELECT f(1)))", 0);
        let Ok(parsed) = parsed else { panic!("parse failed") };
        let Ok(tree) = Tree::build(&parsed.protobuf) else {
            panic!("flatten failed")
        };
        let found = (0..tree.items.len()).any(|i| tree.ty(i) == Some("FuncCall"));
        assert!(found);
    }
}
