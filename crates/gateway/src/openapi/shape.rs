//! Which properties a schema declares, flattened at load into one lookup table per object schema: the
//! `properties` of the schema and of everything it combines (`$ref`, `allOf`, `anyOf`, `oneOf`), whether
//! other keys are allowed, and which properties are `writeOnly`. Two walks use it: the strict request check
//! (a property nobody declared is mass assignment) and the response filter (undeclared and `writeOnly`
//! properties never reach the client).
//!
//! An object schema that declares no `properties` and says nothing about `additionalProperties` is a free-form
//! object and allows anything; once a schema lists its properties, anything else is undeclared unless
//! `additionalProperties` (or `patternProperties`) says otherwise. Alternatives (`anyOf`, `oneOf`) contribute
//! the union of their properties.

use super::names::NameTable;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Index of a node; [`ANY`] allows everything.
pub type ShapeId = usize;
pub const ANY: ShapeId = 0;

/// How a node treats keys it does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    /// Not declared: refused in strict requests, removed from responses.
    Undeclared,
    /// `additionalProperties: true`, `patternProperties`, or a free-form object.
    Any,
    /// `additionalProperties: {schema}`.
    Schema(ShapeId),
}

#[derive(Debug, Clone, Copy)]
struct Prop {
    shape: ShapeId,
    write_only: bool,
}

#[derive(Debug)]
struct Node {
    /// Prepared at load: the response filter looks up every member name of every response it reads.
    props: NameTable<Prop>,
    extra: Extra,
    items: ShapeId,
}

impl Node {
    fn any() -> Node {
        Node { props: NameTable::default(), extra: Extra::Any, items: ANY }
    }

    fn prop(&self, key: &[u8]) -> Option<&Prop> {
        self.props.get(key)
    }
}

/// One schema's raw contribution before flattening.
#[derive(Default)]
struct RawNode {
    props: Vec<(String, ShapeId, bool)>,
    lists_props: bool,
    additional: Option<Extra>,
    includes: Vec<ShapeId>,
    items: Option<ShapeId>,
}

/// The flattened property tables of one converted schema (see `schema::convert`).
#[derive(Debug)]
pub struct Shapes {
    nodes: Vec<Node>,
    root: ShapeId,
}

/// What the response filter did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    /// JSON pointers of undeclared properties (the first few), and how many there were in all.
    pub undeclared: Vec<String>,
    pub undeclared_count: usize,
    /// `writeOnly` properties removed.
    pub write_only_removed: usize,
    /// Count undeclared properties without spelling out their pointers: nobody will read them (the event that
    /// names them is filtered out), and building them is most of what a filtered response costs over a clean one.
    pub skip_pointers: bool,
}

/// Pointers kept for the log; the count says how many more there were.
const MAX_REPORTED: usize = 8;
/// Deepest nesting walked; JSON that deep was refused earlier by the body limits.
const MAX_WALK: usize = 256;

struct Builder<'a> {
    defs: Option<&'a Map<String, Value>>,
    raw: Vec<RawNode>,
    def_ids: HashMap<String, ShapeId>,
    pending: Vec<(String, ShapeId)>,
}

impl Shapes {
    /// Builds the tables for a converted, self-contained schema.
    pub fn build(schema: &Value) -> Shapes {
        let defs = schema.get("$defs").and_then(Value::as_object);
        let mut b = Builder { defs, raw: vec![RawNode::default()], def_ids: HashMap::new(), pending: Vec::new() };
        b.raw[ANY].additional = Some(Extra::Any);
        let root = b.node(schema, 0);
        while let Some((name, id)) = b.pending.pop() {
            let def = b.defs.and_then(|d| d.get(&name)).cloned().unwrap_or(Value::Bool(true));
            let built = b.node(&def, 0);
            b.raw[id].includes.push(built);
        }
        let nodes = (0..b.raw.len()).map(|i| flatten(&b.raw, i)).collect();
        Shapes { nodes, root }
    }

    pub fn root(&self) -> ShapeId {
        self.root
    }

    /// The first property (as a JSON pointer) that no schema declares, or `None`.
    pub fn first_undeclared(&self, value: &Value) -> Option<String> {
        let mut pointer = String::new();
        self.undeclared_in(self.root, value, &mut pointer, 0).then_some(pointer)
    }

    fn undeclared_in(&self, id: ShapeId, value: &Value, pointer: &mut String, depth: usize) -> bool {
        if id == ANY || depth > MAX_WALK {
            return false;
        }
        let node = &self.nodes[id];
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let child = match (node.prop(k.as_bytes()), node.extra) {
                        (Some(p), _) => p.shape,
                        (None, Extra::Any) => ANY,
                        (None, Extra::Schema(s)) => s,
                        (None, Extra::Undeclared) => {
                            push(pointer, k);
                            return true;
                        }
                    };
                    let len = pointer.len();
                    push(pointer, k);
                    if self.undeclared_in(child, v, pointer, depth + 1) {
                        return true;
                    }
                    pointer.truncate(len);
                }
                false
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = pointer.len();
                    push(pointer, &i.to_string());
                    if self.undeclared_in(node.items, v, pointer, depth + 1) {
                        return true;
                    }
                    pointer.truncate(len);
                }
                false
            }
            _ => false,
        }
    }

    /// Removes `writeOnly` properties and, with `drop_undeclared`, properties no schema declares; reports both.
    pub fn filter(&self, value: &mut Value, drop_undeclared: bool) -> Filtered {
        let mut out = Filtered::default();
        let mut pointer = String::new();
        self.filter_in(self.root, value, drop_undeclared, &mut pointer, &mut out, 0);
        out
    }

    fn filter_in(
        &self,
        id: ShapeId,
        value: &mut Value,
        drop: bool,
        pointer: &mut String,
        out: &mut Filtered,
        depth: usize,
    ) {
        if id == ANY || depth > MAX_WALK {
            return;
        }
        let node = &self.nodes[id];
        match value {
            Value::Object(map) => {
                map.retain(|k, _| match (node.prop(k.as_bytes()), node.extra) {
                    (Some(p), _) => {
                        if p.write_only {
                            out.write_only_removed += 1;
                        }
                        !p.write_only
                    }
                    (None, Extra::Undeclared) => {
                        out.undeclared_count += 1;
                        if !out.skip_pointers && out.undeclared.len() < MAX_REPORTED {
                            let mut p = pointer.clone();
                            push(&mut p, k);
                            out.undeclared.push(p);
                        }
                        !drop
                    }
                    (None, _) => true,
                });
                for (k, v) in map.iter_mut() {
                    let child = match (node.prop(k.as_bytes()), node.extra) {
                        (Some(p), _) => p.shape,
                        (None, Extra::Schema(s)) => s,
                        _ => ANY,
                    };
                    if child == ANY {
                        continue;
                    }
                    let len = pointer.len();
                    push(pointer, k);
                    self.filter_in(child, v, drop, pointer, out, depth + 1);
                    pointer.truncate(len);
                }
            }
            Value::Array(items) if node.items != ANY => {
                for (i, v) in items.iter_mut().enumerate() {
                    let len = pointer.len();
                    push(pointer, &i.to_string());
                    self.filter_in(node.items, v, drop, pointer, out, depth + 1);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }
}

/// What a member of an object is to its schema, for walks that do not hold a `Value` (the response pass over
/// the body's bytes): keep it and walk it with this shape, drop it (`writeOnly`), or it is undeclared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    Declared(ShapeId),
    WriteOnly,
    Undeclared,
}

impl Shapes {
    /// The member `key` of an object of shape `id`, by the same rules as [`Shapes::filter`]; `key` is the
    /// name's UTF-8 bytes (unescaped).
    pub fn member(&self, id: ShapeId, key: &[u8]) -> Member {
        let Some(node) = self.nodes.get(id).filter(|_| id != ANY) else { return Member::Declared(ANY) };
        match (node.prop(key), node.extra) {
            (Some(p), _) if p.write_only => Member::WriteOnly,
            (Some(p), _) => Member::Declared(p.shape),
            (None, Extra::Undeclared) => Member::Undeclared,
            (None, Extra::Schema(s)) => Member::Declared(s),
            (None, Extra::Any) => Member::Declared(ANY),
        }
    }

    /// The shape of the elements of an array of shape `id`.
    pub fn items(&self, id: ShapeId) -> ShapeId {
        if id == ANY {
            return ANY;
        }
        self.nodes.get(id).map_or(ANY, |n| n.items)
    }
}

/// Appends one reference token to a JSON pointer (`~` and `/` escaped).
pub fn push_token(pointer: &mut String, token: &str) {
    push(pointer, token)
}

fn push(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

impl Builder<'_> {
    fn def(&mut self, reference: &str) -> ShapeId {
        let Some(name) = reference.strip_prefix("#/$defs/") else { return ANY };
        let name = name.replace("~1", "/").replace("~0", "~");
        if let Some(&id) = self.def_ids.get(&name) {
            return id;
        }
        let id = self.raw.len();
        self.raw.push(RawNode::default());
        self.def_ids.insert(name.clone(), id);
        self.pending.push((name, id));
        id
    }

    fn node(&mut self, schema: &Value, depth: usize) -> ShapeId {
        let Some(obj) = schema.as_object() else { return ANY };
        if depth > MAX_WALK {
            return ANY;
        }
        let id = self.raw.len();
        self.raw.push(RawNode::default());
        let mut raw = RawNode::default();
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            raw.includes.push(self.def(r));
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            raw.lists_props = true;
            for (name, ps) in props {
                let write_only = self.write_only(ps);
                let child = self.node(ps, depth + 1);
                raw.props.push((name.clone(), child, write_only));
            }
        }
        match obj.get("additionalProperties") {
            Some(Value::Bool(true)) => raw.additional = Some(Extra::Any),
            Some(Value::Bool(false)) => raw.additional = Some(Extra::Undeclared),
            Some(s @ Value::Object(_)) => {
                let child = self.node(s, depth + 1);
                raw.additional = Some(if child == ANY { Extra::Any } else { Extra::Schema(child) });
            }
            _ => {}
        }
        if obj.get("patternProperties").is_some_and(|p| p.as_object().is_some_and(|m| !m.is_empty())) {
            raw.additional = Some(Extra::Any);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for s in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
                let child = self.node(s, depth + 1);
                raw.includes.push(child);
            }
        }
        if let Some(items) = obj.get("items") {
            raw.items = Some(self.node(items, depth + 1));
        }
        self.raw[id] = raw;
        id
    }

    /// `writeOnly: true` on the property's schema, directly or through its `$ref`.
    fn write_only(&self, schema: &Value) -> bool {
        let mut s = schema;
        for _ in 0..32 {
            if s.get("writeOnly").and_then(Value::as_bool) == Some(true) {
                return true;
            }
            let Some(name) = s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) else {
                return false;
            };
            match self.defs.and_then(|d| d.get(name)) {
                Some(next) => s = next,
                None => return false,
            }
        }
        false
    }
}

/// Merges a node with everything it includes (transitively, each once).
fn flatten(raw: &[RawNode], id: ShapeId) -> Node {
    if id == ANY {
        return Node::any();
    }
    let mut seen = vec![false; raw.len()];
    let mut stack = vec![id];
    let mut props: HashMap<String, Prop> = HashMap::new();
    let (mut lists_props, mut extra, mut items) = (false, None::<Extra>, None::<ShapeId>);
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut seen[n], true) {
            continue;
        }
        let r = &raw[n];
        lists_props |= r.lists_props;
        for (name, shape, write_only) in &r.props {
            props
                .entry(name.clone())
                .and_modify(|p| {
                    p.write_only |= *write_only;
                    if p.shape == ANY {
                        p.shape = *shape;
                    }
                })
                .or_insert(Prop { shape: *shape, write_only: *write_only });
        }
        extra = match (extra, r.additional) {
            (Some(Extra::Any), _) | (_, Some(Extra::Any)) => Some(Extra::Any),
            (Some(Extra::Schema(s)), _) | (_, Some(Extra::Schema(s))) => Some(Extra::Schema(s)),
            (e, None) => e,
            (_, Some(Extra::Undeclared)) => Some(Extra::Undeclared),
        };
        if items.is_none() {
            items = r.items;
        }
        stack.extend(r.includes.iter().copied().rev());
    }
    let extra = match extra {
        Some(e) => e,
        None if lists_props => Extra::Undeclared,
        None => Extra::Any,
    };
    let mut props: Vec<(String, Prop)> = props.into_iter().collect();
    props.sort_unstable_by(|a, b| a.0.cmp(&b.0)); // a table that does not depend on the hash map's order
    let props = NameTable::new(props.into_iter().map(|(k, p)| (k.into_bytes().into_boxed_slice(), p)));
    Node { props, extra, items: items.unwrap_or(ANY) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user_schema() -> Value {
        json!({
            "$defs": {
                "rampart.0": { "type": "object", "properties": {
                    "id": { "type": "integer", "readOnly": true },
                    "name": { "type": "string" },
                    "password": { "type": "string", "writeOnly": true },
                    "address": { "$ref": "#/$defs/rampart.1" },
                    "friends": { "type": "array", "items": { "$ref": "#/$defs/rampart.0" } },
                    "meta": { "type": "object" },
                    "labels": { "type": "object", "additionalProperties": { "type": "object", "properties": { "v": {} } } }
                } },
                "rampart.1": { "allOf": [
                    { "type": "object", "properties": { "street": { "type": "string" } } },
                    { "properties": { "city": { "type": "string" } } }
                ] }
            },
            "$ref": "#/$defs/rampart.0"
        })
    }

    #[test]
    fn undeclared_properties_are_found_through_refs_allof_items_and_cycles() {
        let s = Shapes::build(&user_schema());
        assert_eq!(s.first_undeclared(&json!({"name":"a","address":{"street":"x","city":"y"}})), None);
        assert_eq!(s.first_undeclared(&json!({"name":"a","role":"admin"})), Some("/role".into()));
        assert_eq!(s.first_undeclared(&json!({"address":{"zip":"1"}})), Some("/address/zip".into()));
        assert_eq!(
            s.first_undeclared(&json!({"friends":[{"name":"b"},{"is_admin":true}]})),
            Some("/friends/1/is_admin".into())
        );
        assert_eq!(s.first_undeclared(&json!({"meta":{"anything":{"goes":1}}})), None, "free-form object");
        assert_eq!(s.first_undeclared(&json!({"labels":{"a/b":{"v":1,"w":2}}})), Some("/labels/a~1b/w".into()));
    }

    #[test]
    fn the_filter_drops_undeclared_and_write_only_properties() {
        let s = Shapes::build(&user_schema());
        let mut v = json!({"id":1,"name":"a","password":"hunter2","internal_score":7,
            "friends":[{"id":2,"password":"x","ssn":"123"}],"meta":{"k":1}});
        let f = s.filter(&mut v, true);
        assert_eq!(v, json!({"id":1,"name":"a","friends":[{"id":2}],"meta":{"k":1}}));
        assert_eq!(f.write_only_removed, 2);
        assert_eq!(f.undeclared_count, 2);
        assert_eq!(f.undeclared, vec!["/internal_score".to_string(), "/friends/0/ssn".to_string()]);
        // Reporting only: undeclared stay, writeOnly still go.
        let mut v = json!({"name":"a","password":"p","extra":1});
        let f = s.filter(&mut v, false);
        assert_eq!(v, json!({"name":"a","extra":1}));
        assert_eq!((f.undeclared_count, f.write_only_removed), (1, 1));
    }
}
