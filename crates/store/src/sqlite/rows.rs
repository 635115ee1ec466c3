//! Rows on SQLite: records as JSON documents beside their indexed columns
//! (the shared [`Row`]), and the small query helpers every table uses.

use super::sql;
use crate::backend::{Field, PageQuery, Result, Row, from_doc};
use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql};
use serde::de::DeserializeOwned;

impl ToSql for Field {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Field::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Field::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Field::Null => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// Inserts a row; `on_conflict` is appended (e.g. `ON CONFLICT (fire_key) DO NOTHING`).
/// Returns the number of rows inserted.
pub(super) fn insert_row(
    c: &Connection,
    table: &str,
    row: &Row,
    on_conflict: &str,
) -> rusqlite::Result<usize> {
    let names: Vec<&str> = row.fields.iter().map(|(n, _)| *n).collect();
    let text = format!(
        "INSERT INTO {table} (id, {}, doc) VALUES (?{}, ?) {on_conflict}",
        names.join(", "),
        ", ?".repeat(names.len())
    );
    let mut args: Vec<&dyn ToSql> = vec![&row.id];
    args.extend(row.fields.iter().map(|(_, v)| v as &dyn ToSql));
    args.push(&row.doc);
    c.prepare_cached(&text)?.execute(args.as_slice())
}

/// Replaces a row if its stored version is `expected`; true if it did.
pub(super) fn replace_row(
    c: &Connection,
    table: &str,
    row: &Row,
    expected: u64,
) -> rusqlite::Result<bool> {
    let sets: Vec<String> = row.fields.iter().map(|(n, _)| format!("{n} = ?")).collect();
    let text = format!(
        "UPDATE {table} SET {}, doc = ? WHERE id = ? AND version = ?",
        sets.join(", ")
    );
    let mut args: Vec<&dyn ToSql> = row.fields.iter().map(|(_, v)| v as &dyn ToSql).collect();
    let expected = expected as i64;
    args.extend([&row.doc as &dyn ToSql, &row.id, &expected]);
    Ok(c.prepare_cached(&text)?.execute(args.as_slice())? == 1)
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Runs a query whose single column is a JSON document.
pub(super) fn docs<T: DeserializeOwned>(
    conn: &Connection,
    sql_text: &str,
    args: &[&dyn ToSql],
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql_text).map_err(sql)?;
    let rows = stmt
        .query_map(args, |row| row.get::<_, String>(0))
        .map_err(sql)?;
    crate::backend::readable(
        "record",
        rows.map(|row| row.map_err(sql).and_then(|text| from_doc(&text))),
    )
}

pub(super) fn doc<T: DeserializeOwned>(
    conn: &Connection,
    sql_text: &str,
    id: &str,
) -> Result<Option<T>> {
    let text: Option<String> = conn
        .prepare_cached(sql_text)
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(sql)?;
    text.map(|t| from_doc(&t)).transpose()
}

/// Appends `AND id < ?` and the order and limit of a page.
pub(super) fn paged(
    mut text: String,
    args: &mut Vec<Box<dyn ToSql + Send>>,
    page: &PageQuery,
) -> String {
    if let Some(before) = &page.before {
        text.push_str(" AND id < ?");
        args.push(Box::new(before.clone()));
    }
    text.push_str(&format!(" ORDER BY id DESC LIMIT {}", page.limit));
    text
}

pub(super) fn list<T: DeserializeOwned>(
    conn: &Connection,
    text: &str,
    args: &[Box<dyn ToSql + Send>],
) -> Result<Vec<T>> {
    let refs: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref() as &dyn ToSql).collect();
    docs(conn, text, &refs)
}
