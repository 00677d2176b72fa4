//! Routing: host + method + path template → a declared route. Anything undeclared is a 404 (deny by default);
//! a declared path with an undeclared method is a 405 with `Allow`.

use http::{HeaderValue, Method};
use std::borrow::Cow;
use std::collections::HashMap;

/// Name of the parameter a `/prefix/*` template captures its tail in; not reported as a route parameter.
const CATCH_ALL: &str = "__rampart_tail";

/// Index of a route in the compiled runtime's route list.
pub type RouteId = usize;

/// Why a route could not be added; reported by config compilation with the route's location.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("invalid path template `{template}`: {reason}")]
    Template { template: String, reason: String },
    #[error("`{method} {template}` is declared by two routes")]
    Duplicate { method: String, template: String },
}

/// One route's contribution to the router.
pub struct RouteSpec<'a> {
    pub id: RouteId,
    pub hosts: &'a [String],
    pub path: &'a str,
    /// Empty = any method.
    pub methods: &'a [Method],
}

#[derive(Default)]
struct MethodSet {
    by_method: Vec<(Method, RouteId)>,
    any: Option<RouteId>,
}

impl MethodSet {
    fn allow_header(&self) -> HeaderValue {
        let list: Vec<&str> = self.by_method.iter().map(|(m, _)| m.as_str()).collect();
        HeaderValue::from_str(&list.join(", ")).unwrap_or(HeaderValue::from_static(""))
    }
}

#[derive(Default)]
struct PathTable {
    router: matchit::Router<usize>,
    templates: HashMap<String, usize>,
    sets: Vec<MethodSet>,
    allow: Vec<HeaderValue>,
}

/// The outcome of routing a request.
#[derive(Debug, PartialEq)]
pub enum RouteMatch {
    Found { route: RouteId, params: Vec<(String, String)> },
    MethodNotAllowed { allow: HeaderValue },
    NotFound,
}

/// Host → path template → method → route, built once at config load.
#[derive(Default)]
pub struct Router {
    exact_hosts: HashMap<String, PathTable>,
    wildcard_hosts: Vec<(String, PathTable)>,
    any_host: PathTable,
    case_insensitive: bool,
}

/// Turns the config syntax (`/users/{id}`, `/static/*`) into matchit's, lower-casing literal segments when
/// matching is case-insensitive. Returns the templates to insert (a prefix wildcard also matches its bare prefix).
fn templates(path: &str, case_insensitive: bool) -> Result<Vec<String>, String> {
    if !path.starts_with('/') {
        return Err("a path template starts with `/`".into());
    }
    let mut t = String::with_capacity(path.len() + 8);
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                depth += 1;
                t.push(c)
            }
            '}' => {
                depth -= 1;
                t.push(c)
            }
            c if depth == 0 && case_insensitive => t.push(c.to_ascii_lowercase()),
            c => t.push(c),
        }
    }
    if let Some(prefix) = t.strip_suffix("/*") {
        let bare = if prefix.is_empty() { "/".to_string() } else { prefix.to_string() };
        return Ok(vec![format!("{prefix}/{{*{CATCH_ALL}}}"), bare]);
    }
    if t.contains('*') && !t.contains("{*") {
        return Err("`*` is only allowed as the last segment (`/prefix/*`)".into());
    }
    if t.len() > 1 && t.ends_with('/') {
        t.pop();
    }
    Ok(vec![t])
}

fn normalize_host(host: &str) -> Cow<'_, str> {
    let h = match host.rfind(':') {
        // Keep IPv6 literals intact: `[::1]:8080` → `[::1]`.
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

impl Router {
    pub fn new(case_insensitive: bool) -> Self {
        Router { case_insensitive, ..Default::default() }
    }

    pub fn add(&mut self, spec: &RouteSpec<'_>) -> Result<(), RouteError> {
        let temps = templates(spec.path, self.case_insensitive)
            .map_err(|reason| RouteError::Template { template: spec.path.to_string(), reason })?;
        let case_insensitive = self.case_insensitive;
        let mut tables: Vec<&mut PathTable> = Vec::new();
        if spec.hosts.is_empty() {
            tables.push(&mut self.any_host);
        } else {
            let (wild, exact): (Vec<&String>, Vec<&String>) = spec.hosts.iter().partition(|h| h.starts_with("*."));
            let exact_keys: Vec<String> = exact.iter().map(|h| normalize_host(h).into_owned()).collect();
            let wild_keys: Vec<String> = wild.iter().map(|h| h[1..].to_ascii_lowercase()).collect();
            for k in &exact_keys {
                self.exact_hosts.entry(k.clone()).or_default();
            }
            for k in &wild_keys {
                if !self.wildcard_hosts.iter().any(|(s, _)| s == k) {
                    self.wildcard_hosts.push((k.clone(), PathTable::default()));
                }
            }
            for (k, table) in self.exact_hosts.iter_mut() {
                if exact_keys.contains(k) {
                    tables.push(table);
                }
            }
            for (k, table) in self.wildcard_hosts.iter_mut() {
                if wild_keys.contains(k) {
                    tables.push(table);
                }
            }
        }
        let _ = case_insensitive;
        for table in tables {
            for t in &temps {
                table.add(t, spec)?;
            }
        }
        Ok(())
    }

    /// Routes an already-normalised path.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> RouteMatch {
        let lowered;
        let key: &str = if self.case_insensitive && path.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = path.to_ascii_lowercase();
            &lowered
        } else {
            path
        };
        let key = if key.len() > 1 { key.strip_suffix('/').unwrap_or(key) } else { key };
        let mut result = RouteMatch::NotFound;
        let host = if self.exact_hosts.is_empty() && self.wildcard_hosts.is_empty() { None } else { host };
        if let Some(host) = host {
            let host = normalize_host(host);
            if let Some(t) = self.exact_hosts.get(host.as_ref()) {
                result = t.find(method, key, path);
            }
            if result == RouteMatch::NotFound {
                for (suffix, t) in &self.wildcard_hosts {
                    if host.ends_with(suffix.as_str()) && host.len() > suffix.len() {
                        result = t.find(method, key, path);
                        if result != RouteMatch::NotFound {
                            break;
                        }
                    }
                }
            }
        }
        if result == RouteMatch::NotFound {
            result = self.any_host.find(method, key, path);
        }
        result
    }
}

impl PathTable {
    fn add(&mut self, template: &str, spec: &RouteSpec<'_>) -> Result<(), RouteError> {
        let idx = match self.templates.get(template) {
            Some(&i) => i,
            None => {
                let i = self.sets.len();
                self.router
                    .insert(template, i)
                    .map_err(|e| RouteError::Template { template: spec.path.to_string(), reason: e.to_string() })?;
                self.templates.insert(template.to_string(), i);
                self.sets.push(MethodSet::default());
                self.allow.push(HeaderValue::from_static(""));
                i
            }
        };
        let set = &mut self.sets[idx];
        let dup = |m: &str| RouteError::Duplicate { method: m.to_string(), template: spec.path.to_string() };
        if spec.methods.is_empty() {
            if set.any.is_some() {
                return Err(dup("ANY"));
            }
            set.any = Some(spec.id);
        } else {
            for m in spec.methods {
                if set.by_method.iter().any(|(x, _)| x == m) {
                    return Err(dup(m.as_str()));
                }
                set.by_method.push((m.clone(), spec.id));
            }
        }
        self.allow[idx] = set.allow_header();
        Ok(())
    }

    fn find(&self, method: &Method, key: &str, original: &str) -> RouteMatch {
        let Ok(m) = self.router.at(key) else {
            return RouteMatch::NotFound;
        };
        let set = &self.sets[*m.value];
        let route = set.by_method.iter().find(|(x, _)| x == method).map(|(_, r)| *r).or(set.any);
        let Some(route) = route else {
            return RouteMatch::MethodNotAllowed { allow: self.allow[*m.value].clone() };
        };
        let mut params = Vec::new();
        for (name, value) in m.params.iter().filter(|(n, _)| *n != CATCH_ALL) {
            // Values come from the lower-cased key; take the same byte range of the original spelling.
            let start = value.as_ptr() as usize - key.as_ptr() as usize;
            let v = original.get(start..start + value.len()).unwrap_or(value);
            params.push((name.to_string(), v.to_string()));
        }
        RouteMatch::Found { route, params }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let mut r = Router::new(true);
        let get = [Method::GET];
        let get_patch = [Method::GET, Method::PATCH];
        r.add(&RouteSpec { id: 0, hosts: &[], path: "/users/{id}", methods: &get_patch }).unwrap();
        r.add(&RouteSpec { id: 1, hosts: &[], path: "/users", methods: &get }).unwrap();
        r.add(&RouteSpec { id: 2, hosts: &[], path: "/Static/*", methods: &[] }).unwrap();
        r.add(&RouteSpec { id: 3, hosts: &["admin.example.com".into()], path: "/users", methods: &get }).unwrap();
        r.add(&RouteSpec { id: 4, hosts: &["*.tenant.io".into()], path: "/t", methods: &get }).unwrap();
        r
    }

    #[test]
    fn matches_templates_methods_and_hosts() {
        let r = router();
        assert_eq!(
            r.find(None, &Method::GET, "/users/AbC"),
            RouteMatch::Found { route: 0, params: vec![("id".into(), "AbC".into())] }
        );
        assert!(matches!(r.find(None, &Method::GET, "/USERS/"), RouteMatch::Found { route: 1, .. }));
        assert!(matches!(
            r.find(Some("Admin.Example.com:443"), &Method::GET, "/users"),
            RouteMatch::Found { route: 3, .. }
        ));
        assert!(matches!(r.find(Some("other"), &Method::GET, "/users"), RouteMatch::Found { route: 1, .. }));
        assert!(matches!(r.find(Some("a.tenant.io"), &Method::GET, "/t"), RouteMatch::Found { route: 4, .. }));
        assert_eq!(r.find(Some("tenant.io"), &Method::GET, "/t"), RouteMatch::NotFound);
        assert!(matches!(r.find(None, &Method::DELETE, "/static/a/b"), RouteMatch::Found { route: 2, .. }));
        assert!(matches!(r.find(None, &Method::GET, "/static"), RouteMatch::Found { route: 2, .. }));
    }

    #[test]
    fn undeclared_is_not_found_and_wrong_method_is_405() {
        let r = router();
        assert_eq!(r.find(None, &Method::GET, "/admin"), RouteMatch::NotFound);
        assert_eq!(r.find(None, &Method::GET, "/users/1/x"), RouteMatch::NotFound);
        match r.find(None, &Method::DELETE, "/users/1") {
            RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, PATCH"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicates_and_bad_templates_are_refused() {
        let mut r = router();
        let get = [Method::GET];
        assert!(r.add(&RouteSpec { id: 9, hosts: &[], path: "/users/{id}", methods: &get }).is_err());
        assert!(r.add(&RouteSpec { id: 9, hosts: &[], path: "users", methods: &get }).is_err());
        assert!(r.add(&RouteSpec { id: 9, hosts: &[], path: "/a/*/b", methods: &get }).is_err());
    }
}
