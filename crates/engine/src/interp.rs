//! `${vars.x}`, `${env.X}` and `${matrix.k}` in workflow values.
//!
//! A string that is exactly one reference takes the referenced value with its type
//! (`seed: ${matrix.seed}` is a number); references inside longer strings are replaced by
//! their text. `$${` writes a literal `${`.

use std::collections::BTreeMap;

use serde_json::Value;

/// What references resolve against.
#[derive(Debug, Default, Clone)]
pub struct Scope<'a> {
    /// `vars.*`
    pub vars: Option<&'a serde_json::Map<String, Value>>,
    /// `matrix.*`
    pub matrix: BTreeMap<String, Value>,
    /// Keep `${env.X}` as written instead of reading the environment (for cache keys and records).
    pub keep_env: bool,
}

/// A reference that cannot be resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct InterpError {
    /// Path of the string inside the interpolated value (relative).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Suggestion.
    pub hint: Option<String>,
}

/// Environment values read while interpolating: they are secrets, redacted from records.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    /// (variable name, value)
    pub values: Vec<(String, String)>,
}

impl Secrets {
    /// Replace every secret value inside `s` by its `${env.NAME}` reference (longest values
    /// first, so a secret that contains another is replaced whole).
    pub fn redact_str(&self, s: &str) -> String {
        let mut values: Vec<&(String, String)> =
            self.values.iter().filter(|(_, v)| !v.is_empty()).collect();
        values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let mut s = s.to_owned();
        for (name, value) in values {
            if s.contains(value.as_str()) {
                s = s.replace(value.as_str(), &format!("${{env.{name}}}"));
            }
        }
        s
    }

    /// Replace every secret value inside strings of `v` by its `${env.NAME}` reference.
    pub fn redact(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.redact_str(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact(x)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (k.clone(), self.redact(x))).collect())
            }
            other => other.clone(),
        }
    }
}

/// Interpolate every string in `value`.
pub fn interpolate(
    value: &Value,
    scope: &Scope<'_>,
    secrets: &mut Secrets,
) -> Result<Value, InterpError> {
    walk(value, scope, secrets, String::new())
}

fn walk(
    value: &Value,
    scope: &Scope<'_>,
    secrets: &mut Secrets,
    path: String,
) -> Result<Value, InterpError> {
    Ok(match value {
        Value::String(s) => string(s, scope, secrets).map_err(|(message, hint)| InterpError {
            path,
            message,
            hint,
        })?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| walk(x, scope, secrets, format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, x)| {
                    Ok((
                        k.clone(),
                        walk(x, scope, secrets, crate::yaml::join(&path, k))?,
                    ))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

type Problem = (String, Option<String>);

fn lookup(
    reference: &str,
    scope: &Scope<'_>,
    secrets: &mut Secrets,
) -> Result<Option<Value>, Problem> {
    let (ns, name) = reference.split_once('.').ok_or_else(|| {
        (
            format!("`${{{reference}}}` is not of the form `${{vars.NAME}}`"),
            None,
        )
    })?;
    match ns {
        "vars" => {
            let vars = scope.vars;
            match vars.and_then(|v| v.get(name)) {
                Some(v) => Ok(Some(v.clone())),
                None => {
                    let known: Vec<&str> = vars
                        .map(|v| v.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let hint = scorch_api::did_you_mean(name, known.iter().copied())
                        .map(|c| format!("did you mean `${{vars.{c}}}`?"))
                        .or_else(|| {
                            Some(format!(
                                "define it under `vars:` or pass `--set vars.{name}=VALUE`"
                            ))
                        });
                    Err((format!("variable `vars.{name}` is not set"), hint))
                }
            }
        }
        "matrix" => match scope.matrix.get(name) {
            Some(v) => Ok(Some(v.clone())),
            None => {
                let hint = if scope.matrix.is_empty() {
                    Some("this node has no `matrix:`".to_owned())
                } else {
                    scorch_api::did_you_mean(name, scope.matrix.keys().map(String::as_str))
                        .map(|c| format!("did you mean `${{matrix.{c}}}`?"))
                };
                Err((format!("variable `matrix.{name}` is not set"), hint))
            }
        },
        "env" => {
            if scope.keep_env {
                return Ok(None);
            }
            match std::env::var(name) {
                Ok(v) => {
                    secrets.values.push((name.to_owned(), v.clone()));
                    Ok(Some(Value::String(v)))
                }
                Err(_) => Err((
                    format!("environment variable `{name}` is not set"),
                    Some(format!("export {name}=... before running")),
                )),
            }
        }
        other => Err((
            format!("unknown namespace `{other}` in `${{{reference}}}`"),
            Some("use `${vars.NAME}`, `${env.NAME}` or `${matrix.KEY}`".to_owned()),
        )),
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn string(s: &str, scope: &Scope<'_>, secrets: &mut Secrets) -> Result<Value, Problem> {
    if !s.contains('$') {
        return Ok(Value::String(s.to_owned()));
    }
    // A whole-string reference keeps the value's type.
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !inner.contains(['{', '}', '$'])
    {
        return Ok(lookup(inner, scope, secrets)?.unwrap_or_else(|| Value::String(s.to_owned())));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| (format!("unclosed `${{` in `{s}`"), None))?;
            let reference = &after[..end];
            match lookup(reference, scope, secrets)? {
                Some(v) => out.push_str(&text_of(&v)),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_references_keep_their_type() {
        let vars = json!({"n": 3, "name": "x"});
        let scope = Scope {
            vars: vars.as_object(),
            ..Default::default()
        };
        let mut s = Secrets::default();
        let v = interpolate(
            &json!({"a": "${vars.n}", "b": "n=${vars.n}/${vars.name}", "c": "$${vars.n}"}),
            &scope,
            &mut s,
        )
        .unwrap();
        assert_eq!(v, json!({"a": 3, "b": "n=3/x", "c": "${vars.n}"}));
    }

    #[test]
    fn unset_variables_name_the_path_and_a_hint() {
        let vars = json!({"steps": 3});
        let scope = Scope {
            vars: vars.as_object(),
            ..Default::default()
        };
        let err = interpolate(
            &json!({"opt": {"k": ["${vars.step}"]}}),
            &scope,
            &mut Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(err.path, "opt.k[0]");
        assert_eq!(err.message, "variable `vars.step` is not set");
        assert_eq!(err.hint.as_deref(), Some("did you mean `${vars.steps}`?"));
    }

    #[test]
    fn env_values_are_secrets() {
        // PATH is set in every test environment.
        let path = std::env::var("PATH").unwrap();
        let mut s = Secrets::default();
        let v = interpolate(
            &json!({"k": "Bearer ${env.PATH}"}),
            &Scope::default(),
            &mut s,
        )
        .unwrap();
        assert_eq!(v["k"], json!(format!("Bearer {path}")));
        assert_eq!(s.redact(&v), json!({"k": "Bearer ${env.PATH}"}));
        let kept = interpolate(
            &json!({"k": "${env.PATH}"}),
            &Scope {
                keep_env: true,
                ..Default::default()
            },
            &mut Secrets::default(),
        )
        .unwrap();
        assert_eq!(kept, json!({"k": "${env.PATH}"}));
    }
}
