//! The SQL the store runs, once, for both backends.
//!
//! Every operation of the store is written against [`Tx`], a transaction of either backend
//! (SQLite through rusqlite, PostgreSQL through the `postgres` client). Statements are
//! written in the portable dialect of the crate docs with SQLite's `?N` placeholders; the
//! PostgreSQL backend rewrites them to `$N` ([`numbered_placeholders`]). Values cross the
//! boundary as [`Value`]s: integers (`BIGINT`), text, bytes and NULL, the only column types
//! of the schema.

use crate::{Failure, Op};

/// A value bound to a statement or read from a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "an integer",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        }
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Integer(n)
    }
}

/// The parameters of a statement built at run time, as [`params!`] makes them.
pub(crate) fn dyn_params(values: &[Value]) -> Vec<&dyn ToValue> {
    values.iter().map(|v| v as &dyn ToValue).collect()
}

/// Something that can be bound to a statement's placeholder.
pub(crate) trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Integer(*self)
    }
}

impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// Something a column can be read as.
pub(crate) trait FromValue: Sized {
    fn from_value(value: Value) -> Result<Self, Value>;
}

impl FromValue for Value {
    fn from_value(value: Value) -> Result<Self, Value> {
        Ok(value)
    }
}

impl FromValue for i64 {
    fn from_value(value: Value) -> Result<Self, Value> {
        match value {
            Value::Integer(n) => Ok(n),
            other => Err(other),
        }
    }
}

impl FromValue for u32 {
    fn from_value(value: Value) -> Result<Self, Value> {
        match value {
            Value::Integer(n) => u32::try_from(n).map_err(|_| Value::Integer(n)),
            other => Err(other),
        }
    }
}

impl FromValue for String {
    fn from_value(value: Value) -> Result<Self, Value> {
        match value {
            Value::Text(text) => Ok(text),
            other => Err(other),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: Value) -> Result<Self, Value> {
        match value {
            Value::Blob(bytes) => Ok(bytes),
            other => Err(other),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value) -> Result<Self, Value> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One row of a result, its columns in the order of the `SELECT`.
#[derive(Debug)]
pub(crate) struct Row {
    values: Vec<Value>,
}

impl Row {
    pub(crate) fn new(values: Vec<Value>) -> Self {
        Self { values }
    }

    /// Every column, in the order of the `SELECT`.
    pub(crate) fn into_values(self) -> Vec<Value> {
        self.values
    }

    /// Column `index` (from 0) as a `T`; a column of another type is [`Failure::Corrupt`].
    pub(crate) fn get<T: FromValue>(&self, index: usize) -> Op<T> {
        let value = self.values.get(index).cloned().ok_or_else(|| {
            Failure::Corrupt(format!(
                "column {index} asked of a row of {}",
                self.values.len()
            ))
        })?;
        T::from_value(value).map_err(|found| {
            Failure::Corrupt(format!(
                "column {index} holds {}, not a {}",
                found.kind(),
                std::any::type_name::<T>()
            ))
        })
    }
}

/// The SQL dialect of a backend, for the few statements that differ (column types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A schema statement in this dialect: the portable schema's `BLOB` is PostgreSQL's
    /// `BYTEA`; everything else is the same in both.
    pub(crate) fn ddl(self, statement: &str) -> std::borrow::Cow<'_, str> {
        match self {
            Dialect::Sqlite => statement.into(),
            Dialect::Postgres => statement.replace(" BLOB", " BYTEA").into(),
        }
    }
}

/// One transaction of a backend. Object-safe: the operations take `&Tx<'_>`.
pub(crate) trait Sql {
    /// The backend's dialect.
    fn dialect(&self) -> Dialect;

    /// Runs one statement; returns how many rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Op<usize>;

    /// Runs one query; returns every row.
    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Op<Vec<Row>>;
}

/// A transaction of either backend.
pub(crate) type Tx<'a> = dyn Sql + 'a;

impl Tx<'_> {
    /// The first row of `sql`, mapped by `f`; [`Failure::NoRows`] if there is none.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Op<T>,
    ) -> Op<T> {
        let rows = self.query(sql, params)?;
        rows.first().map_or(Err(Failure::NoRows), f)
    }

    /// Every row of `sql`, each mapped by `f`.
    pub(crate) fn query_map<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnMut(&Row) -> Op<T>,
    ) -> Op<Vec<T>> {
        self.query(sql, params)?.iter().map(f).collect()
    }
}

/// `Op<T>` → `Op<Option<T>>`: no row is `None`.
pub(crate) trait OptionalExtension<T> {
    fn optional(self) -> Op<Option<T>>;
}

impl<T> OptionalExtension<T> for Op<T> {
    fn optional(self) -> Op<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(Failure::NoRows) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// The parameters of a statement: `params![a, b]` binds `a` to `?1` and `b` to `?2`.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::sql::ToValue]
    };
    ($($param:expr),+ $(,)?) => {
        &[$(&$param as &dyn $crate::sql::ToValue),+] as &[&dyn $crate::sql::ToValue]
    };
}
pub(crate) use params;

/// Rewrites SQLite's placeholders (`?N`, and `?` meaning one more than the highest so far)
/// to PostgreSQL's `$N`, leaving quoted strings and identifiers alone.
pub(crate) fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut highest = 0u32;
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                let n = digits.parse().unwrap_or(highest + 1);
                highest = highest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_outside_quotes() {
        assert_eq!(
            numbered_placeholders("SELECT a FROM t WHERE b = ?2 AND c = ?1 AND d = '?3'"),
            "SELECT a FROM t WHERE b = $2 AND c = $1 AND d = '?3'"
        );
        assert_eq!(
            numbered_placeholders("WHERE a = ?1 AND b IN (?, ?) LIMIT ?"),
            "WHERE a = $1 AND b IN ($2, $3) LIMIT $4"
        );
        assert_eq!(numbered_placeholders("\"odd?\" = ?10"), "\"odd?\" = $10");
    }

    #[test]
    fn columns_of_another_type_are_reported_not_coerced() {
        let row = Row::new(vec![Value::Text("x".into()), Value::Null]);
        assert_eq!(row.get::<String>(0).unwrap(), "x");
        assert_eq!(row.get::<Option<i64>>(1).unwrap(), None);
        assert!(matches!(row.get::<i64>(0), Err(Failure::Corrupt(_))));
        assert!(matches!(row.get::<i64>(2), Err(Failure::Corrupt(_))));
    }
}
