//! Ties [`KEYS`] to the raw serde mirror and to validation's defaults.

use std::collections::BTreeSet;
use std::path::Path;

use serde::de::{self, Deserialize, Visitor};

use super::*;
use crate::config::raw::*;
use crate::config::Config;

/// A deserializer that only records the field names a struct asks for.
struct Fields<'a>(&'a mut Vec<&'static str>);

impl<'de> de::Deserializer<'de> for Fields<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(de::Error::custom("recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

fn fields_of<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    let mut out = Vec::new();
    let _ = T::deserialize(Fields(&mut out));
    out
}

#[test]
fn every_raw_field_has_a_row_and_every_row_a_field() {
    assert_eq!(
        fields_of::<RawFile>(),
        ["server", "tls", "session", "store", "auth", "identity", "csrf", "route"]
    );
    let mut tls = fields_of::<RawTls>();
    assert!(tls.contains(&"sni"));
    tls.retain(|f| *f != "sni");
    let sections = [
        ("server", fields_of::<RawServer>()),
        ("tls", tls),
        ("tls.sni", fields_of::<RawSni>()),
        ("session", fields_of::<RawSession>()),
        ("store", fields_of::<RawStore>()),
        ("auth", fields_of::<RawAuth>()),
        ("identity", fields_of::<RawIdentity>()),
        ("csrf", fields_of::<RawCsrf>()),
        ("route", fields_of::<RawRoute>()),
    ];
    let raw: BTreeSet<String> = sections
        .iter()
        .flat_map(|(s, fs)| fs.iter().map(move |f| format!("{s}.{f}")))
        .collect();
    let table: BTreeSet<String> = KEYS.iter().map(|d| d.key.to_string()).collect();
    assert_eq!(KEYS.len(), table.len(), "a key is listed twice");
    let missing: Vec<_> = raw.difference(&table).collect();
    let extra: Vec<_> = table.difference(&raw).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "src/config/reference.rs KEYS is out of step with src/config/raw.rs: \
         no row for {missing:?}; no field for {extra:?}"
    );
    for d in KEYS {
        assert!(SECTIONS.contains(&section_of(d.key)), "{}", d.key);
    }
}

#[test]
fn keys_are_in_section_order() {
    let order: Vec<usize> = KEYS
        .iter()
        .map(|d| {
            SECTIONS
                .iter()
                .position(|s| *s == section_of(d.key))
                .unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
}

const ROUTE: &str = "[[route]]\nupstream = \"http://127.0.0.1:5000\"\n";

/// The config's `Debug`, without the warnings a key of an unbuilt feature
/// gives: equal texts mean equal configs.
fn parsed(text: &str) -> String {
    let mut c =
        Config::parse(Path::new("/x/proxy.toml"), text).unwrap_or_else(|e| panic!("{text}\n{e}"));
    c.warnings.clear();
    format!("{c:?}")
}

/// A valid config with one route that sets `d`'s key to `value`.
fn setting(d: &KeyDoc, value: &str) -> String {
    let (section, key) = (section_of(d.key), leaf(d.key));
    if d.key == "auth.provider" && value == "\"form\"" {
        // The form provider requires its success paths (SPEC §8.4a).
        return format!("[auth]\n{key} = {value}\nform_success_paths = [\"/\"]\n{ROUTE}");
    }
    if section == "route" {
        format!("{ROUTE}{key} = {value}\n")
    } else {
        format!("[{section}]\n{key} = {value}\n{ROUTE}")
    }
}

/// Whether validation accepts `value` for `d`; a provider refused only
/// for what it needs beside it (`local` its users file `/x/users.toml`,
/// `oidc` an issuer, `form` its success paths) counts as accepted.
fn accepted(d: &KeyDoc, value: &str) -> bool {
    match Config::parse(Path::new("/x/proxy.toml"), &setting(d, value)) {
        Ok(_) => true,
        // Accepted, but needing companion keys or files: `oidc` needs an
        // issuer, `form` success paths, `local` its users file.
        Err(e) => {
            let e = e.to_string();
            e.contains("is required with provider") || e.contains("users.toml")
        }
    }
}

#[test]
fn each_default_is_what_leaving_the_key_out_yields() {
    let base = parsed(ROUTE);
    let mut checked = 0;
    for d in KEYS {
        let Some(default) = d.default else { continue };
        let text = setting(d, default);
        assert_eq!(
            parsed(&text),
            base,
            "the default of {} is not {default}",
            d.key
        );
        checked += 1;
    }
    assert!(checked > 60, "{checked}");
}

#[test]
fn restart_keys_are_rows() {
    for key in READ_AT_START {
        let d = KEYS.iter().find(|d| d.key == key).expect(key);
        assert!(!d.reloadable());
    }
    assert_eq!(
        KEYS.iter().filter(|d| !d.reloadable()).count(),
        READ_AT_START.len()
    );
}

#[test]
fn choice_defaults_are_among_the_choices_and_the_schema_is_json() {
    for d in KEYS {
        if let (Ty::Choice(c), Some(v)) = (d.ty, d.default) {
            assert!(c.contains(&v.trim_matches('"')), "{}", d.key);
        }
    }
    let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    assert_eq!(
        schema["properties"]["route"]["items"]["required"],
        json!(["upstream"])
    );
    assert_eq!(
        schema["properties"]["session"]["properties"]["same_site"]["enum"],
        json!(["strict", "lax", "none"])
    );
}

#[test]
fn choices_and_integer_bounds_are_what_validation_accepts() {
    for d in KEYS {
        match d.ty {
            Ty::Choice(choices) => {
                for c in choices {
                    assert!(accepted(d, &format!("{c:?}")), "{} = {c:?}", d.key);
                }
                assert!(!accepted(d, "\"bogus\""), "{}", d.key);
            }
            Ty::Integer { min, max } => {
                assert!(accepted(d, &min.to_string()), "{} = {min}", d.key);
                assert!(accepted(d, &max.to_string()), "{} = {max}", d.key);
                assert!(!accepted(d, &(min - 1).to_string()), "{} below", d.key);
                assert!(!accepted(d, &(max + 1).to_string()), "{} above", d.key);
            }
            _ => {}
        }
    }
}
