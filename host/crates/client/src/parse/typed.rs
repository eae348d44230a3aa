//! The fast path for visualsearch and `crimes/unified` envelopes: the body is deserialized
//! straight into [`Element`]s, skipping every field the client does not read, instead of
//! first building a `serde_json::Value` tree of the whole body (about eleven times the body's
//! size for a large result).
//!
//! It only takes the well-formed shape. Anything else (a field of an unexpected JSON type, an
//! array where an object belongs, broken JSON) makes it give up, and the caller parses the
//! body again through the `Value` path, whose messages say what is wrong. Where it succeeds it
//! gives exactly what the `Value` path gives: duplicate keys keep the last value, scalars are
//! rendered by the same [`text`] function.

use super::{Parsed, VisualAnswer, envelope_status, text};
use crate::types::{Element, ElementRef};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// The elements of an envelope, sorted by result key; `None` when the body is not the
/// well-formed shape (parse it through the `Value` path then).
#[cfg(test)]
pub(super) fn visual_elements(body: &[u8]) -> Option<Parsed<Vec<Element>>> {
    visual_envelope(body).map(|parsed| parsed.and_then(VisualAnswer::whole).map(|a| a.elements))
}

/// The envelope's elements, `data.totalPossibleResults` (when it is a number) and whether it
/// is partial.
pub(super) fn visual_envelope(body: &[u8]) -> Option<Parsed<VisualAnswer>> {
    let Fields(envelope) = serde_json::from_slice::<Fields<Envelope>>(body).ok()?;
    let partial = match envelope_status(
        envelope.status.as_ref(),
        envelope.message.as_ref(),
        envelope.error_message.as_ref(),
    ) {
        Ok(partial) => partial,
        Err(failure) => return Some(Err(failure)),
    };
    // A missing or null `data` is an error the `Value` path words.
    let Fields(data) = envelope.data?;
    let partial =
        partial.or_else(|| super::cut_short(envelope.failures.as_ref(), data.terminated.as_ref()));
    let total = data.total.as_ref().and_then(Value::as_u64);
    let results = data.results.unwrap_or_default();
    let elements = results
        .into_iter()
        .map(|(key, Fields(raw))| raw.into_element(key))
        .collect();
    Some(Ok(VisualAnswer {
        elements,
        total,
        partial,
    }))
}

/// A JSON object read field by field into `T` (never from an array, unlike derived structs).
struct Fields<T>(T);

/// A struct read from a JSON object: one call per key, in order; later keys overwrite.
trait FromFields: Default {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

impl<'de, T: FromFields> Deserialize<'de> for Fields<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor(PhantomData))
    }
}

struct FieldsVisitor<T>(PhantomData<T>);

impl<'de, T: FromFields> Visitor<'de> for FieldsVisitor<T> {
    type Value = Fields<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = T::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            value.field(&key, &mut map)?;
        }
        Ok(Fields(value))
    }
}

/// A value read and thrown away. Unlike `serde::de::IgnoredAny`, which serde_json skips
/// without checking, it goes through `deserialize_any`, so a skipped field is held to the same
/// rules as in the `Value` path (valid escapes and UTF-8, numbers in range, nesting depth)
/// while nothing of it is kept.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// Implements [`FromFields`]: each listed JSON key is read into its field, any other key is
/// skipped without being kept.
macro_rules! fields {
    ($ty:ty { $($key:literal => $field:ident),* $(,)? }) => {
        impl FromFields for $ty {
            fn field<'de, A: MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<(), A::Error> {
                match key {
                    $($key => self.$field = map.next_value()?,)*
                    _ => map.next_value::<Skip>().map(drop)?,
                }
                Ok(())
            }
        }
    };
}

#[derive(Default)]
struct Envelope {
    status: Option<Value>,
    message: Option<Value>,
    error_message: Option<Value>,
    failures: Option<Value>,
    data: Option<Fields<Data>>,
}

fields!(Envelope {
    "status" => status,
    "message" => message,
    "errorMessage" => error_message,
    "failures" => failures,
    "data" => data,
});

#[derive(Default)]
struct Data {
    results: Option<BTreeMap<String, Fields<RawElement>>>,
    total: Option<Value>,
    terminated: Option<Value>,
}

fields!(Data {
    "resultIdToElementDataMap" => results,
    "totalPossibleResults" => total,
    "queryTerminated" => terminated,
});

#[derive(Default)]
struct RawElement {
    guid: Option<Value>,
    simple: Option<BTreeMap<String, Fields<SimpleField>>>,
    refs: Option<BTreeMap<String, Fields<RefField>>>,
    malop_priority: Option<Value>,
}

fields!(RawElement {
    "guidString" => guid,
    "simpleValues" => simple,
    "elementValues" => refs,
    "malopPriority" => malop_priority,
});

impl RawElement {
    fn into_element(self, key: String) -> Element {
        let simple = self
            .simple
            .unwrap_or_default()
            .into_iter()
            .map(|(name, Fields(f))| {
                let values = f.values.unwrap_or_default();
                (name, values.iter().filter_map(|v| text(Some(v))).collect())
            })
            .collect();
        let mut ref_totals = BTreeMap::new();
        let elements = self
            .refs
            .unwrap_or_default()
            .into_iter()
            .map(|(name, Fields(f))| {
                if let Some(total) = f.total.as_ref().and_then(super::count) {
                    ref_totals.insert(name.clone(), total);
                }
                let refs = f.items.unwrap_or_default();
                (
                    name,
                    refs.into_iter()
                        .filter_map(|Fields(r)| r.into_ref())
                        .collect(),
                )
            })
            .collect();
        Element {
            guid: text(self.guid.as_ref()).unwrap_or(key),
            simple,
            elements,
            ref_totals,
            malop_priority: text(self.malop_priority.as_ref()),
        }
    }
}

#[derive(Default)]
struct SimpleField {
    values: Option<Vec<Value>>,
}

fields!(SimpleField { "values" => values });

#[derive(Default)]
struct RefField {
    items: Option<Vec<Fields<RawRef>>>,
    total: Option<Value>,
}

fields!(RefField { "elementValues" => items, "totalValues" => total });

#[derive(Default)]
struct RawRef {
    element_type: Option<Value>,
    guid: Option<Value>,
    name: Option<Value>,
}

fields!(RawRef {
    "elementType" => element_type,
    "guid" => guid,
    "name" => name,
});

impl RawRef {
    fn into_ref(self) -> Option<ElementRef> {
        Some(ElementRef {
            element_type: text(self.element_type.as_ref()).unwrap_or_default(),
            guid: text(self.guid.as_ref())?,
            name: text(self.name.as_ref()).unwrap_or_default(),
        })
    }
}
