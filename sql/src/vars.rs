//! `${NAME}` and `${NAME:-default}` substitution from `--var` and the environment,
//! done on the job text before it is parsed.

use std::collections::BTreeMap;

use crate::error::{Pos, Result};

/// Replace every `${NAME}` / `${NAME:-default}`. `--var` values win over the
/// environment; a name with neither and no default is an error at its position.
pub fn substitute(file: &str, text: &str, vars: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0usize;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let pos = position(text, consumed + start);
        let end = after.find('}').ok_or_else(|| {
            pos.error(
                file,
                "unterminated '${': close the variable reference with '}'",
            )
        })?;
        let body = &after[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n.trim(), Some(d)),
            None => (body.trim(), None),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(pos.error(
                file,
                format!("invalid variable name '{name}': use letters, digits, '_' and '.'"),
            ));
        }
        let value = vars
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .or_else(|| default.map(str::to_string));
        match value {
            Some(v) => out.push_str(&v),
            None => {
                return Err(pos.error(file, format!("variable '{name}' is not set: pass --var {name}=VALUE, export {name}, or write ${{{name}:-default}}")))
            }
        }
        let skip = start + 2 + end + 1;
        consumed += skip;
        rest = &rest[skip..];
    }
    out.push_str(rest);
    Ok(out)
}

fn position(text: &str, byte: usize) -> Pos {
    let before = &text[..byte];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0) as u64
        + 1;
    Pos { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_vars_env_and_defaults() {
        let mut vars = BTreeMap::new();
        vars.insert("OUT".to_string(), "/tmp/x".to_string());
        let s = substitute(
            "j.sql",
            "a ${OUT} b ${STRATA_TEST_UNSET_VAR:-dflt} c",
            &vars,
        )
        .unwrap();
        assert_eq!(s, "a /tmp/x b dflt c");
    }

    #[test]
    fn missing_variable_names_its_position() {
        let err = substitute(
            "j.sql",
            "SELECT 1;\n  x = '${STRATA_NOPE_NOPE}'",
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("j.sql:2:8:"), "{err}");
        assert!(err.contains("--var STRATA_NOPE_NOPE=VALUE"), "{err}");
    }
}
