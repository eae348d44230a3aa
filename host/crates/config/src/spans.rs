//! Where each key of a TOML document sits: maps dotted key paths (`plugins[1].grants`) to
//! byte spans and byte offsets to lines, so every mistake can name its file, line and key.

use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// One key (or array element) of the document.
struct Entry {
    path: String,
    /// The span of the key itself; `None` for array elements.
    key: Option<Range<usize>>,
    /// The span of the value.
    value: Range<usize>,
}

/// Every key path of a document with its spans.
pub(crate) struct SpanIndex<'t> {
    text: &'t str,
    entries: Vec<Entry>,
}

impl<'t> SpanIndex<'t> {
    /// Indexes a parsed document.
    pub(crate) fn new(text: &'t str, root: &DeTable<'_>) -> Self {
        let mut index = Self {
            text,
            entries: Vec::new(),
        };
        index.walk_table("", root);
        index
    }

    fn walk_table(&mut self, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            self.entries.push(Entry {
                path: path.clone(),
                key: Some(key.span()),
                value: value.span(),
            });
            self.walk_value(&path, value.get_ref());
        }
    }

    fn walk_value(&mut self, path: &str, value: &DeValue<'_>) {
        match value {
            DeValue::Table(table) => self.walk_table(path, table),
            DeValue::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.entries.push(Entry {
                        path: item_path.clone(),
                        key: None,
                        value: item.span(),
                    });
                    self.walk_value(&item_path, item.get_ref());
                }
            }
            _ => {}
        }
    }

    /// The 1-based (line, column) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
            before[nl + 1..].chars().count()
        }) + 1;
        (line, column)
    }

    /// The position of a key path: its key if it has one, else its value; an unknown path
    /// falls back to its nearest known ancestor, then to the top of the file.
    pub(crate) fn position_of(&self, path: &str) -> (usize, usize) {
        let mut path = path.to_string();
        loop {
            if let Some(entry) = self.entries.iter().find(|e| e.path == path) {
                let at = entry.key.as_ref().unwrap_or(&entry.value).start;
                return self.line_col(at);
            }
            match parent(&path) {
                Some(p) => path = p,
                None => return (1, 1),
            }
        }
    }

    /// The key path a byte span belongs to: the innermost key whose name or value holds it.
    pub(crate) fn path_at(&self, span: &Range<usize>) -> Option<String> {
        let at = span.start;
        if let Some(entry) = self
            .entries
            .iter()
            .filter(|e| e.key.as_ref().is_some_and(|k| k.contains(&at)))
            .min_by_key(|e| e.key.as_ref().map_or(usize::MAX, |k| k.len()))
        {
            return Some(entry.path.clone());
        }
        self.entries
            .iter()
            .filter(|e| e.value.contains(&at) || (e.value.start == at && e.value.is_empty()))
            .min_by_key(|e| e.value.len())
            .map(|e| e.path.clone())
    }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> none.
fn parent(path: &str) -> Option<String> {
    if path.ends_with(']') {
        return path.rfind('[').map(|i| path[..i].to_string());
    }
    path.rfind('.').map(|i| path[..i].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_lines() {
        let text = "[service]\npoll_interval_secs = 5\n\n[[plugins]]\nname = \"a\"\n\n[[plugins]]\nname = \"b\"\n[plugins.grants]\noperations = [\"x\", \"y\"]\n";
        let doc = DeTable::parse(text).unwrap();
        let index = SpanIndex::new(text, doc.get_ref());
        assert_eq!(index.position_of("service.poll_interval_secs").0, 2);
        assert_eq!(index.position_of("plugins[1].name").0, 8);
        assert_eq!(index.position_of("plugins[1].grants.operations[1]").0, 10);
        assert_eq!(
            index.position_of("plugins[1].nothing").0,
            7,
            "falls back to the [[plugins]] header"
        );
        let y = text.find("\"y\"").unwrap();
        assert_eq!(
            index.path_at(&(y..y + 3)).as_deref(),
            Some("plugins[1].grants.operations[1]")
        );
    }
}
