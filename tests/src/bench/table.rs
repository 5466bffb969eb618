//! The printed table: sections of label/value rows, aligned for a terminal.

/// Rows grouped under section titles.
#[derive(Default)]
pub struct Table {
    lines: Vec<Line>,
}

enum Line {
    Section(String),
    Row(String, String),
    Note(String),
}

impl Table {
    pub fn section(&mut self, title: impl Into<String>) {
        self.lines.push(Line::Section(title.into()));
    }

    pub fn row(&mut self, label: impl Into<String>, value: impl Into<String>) {
        self.lines.push(Line::Row(label.into(), value.into()));
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.lines.push(Line::Note(text.into()));
    }

    /// The table as text, labels padded to the widest.
    pub fn render(&self) -> String {
        let width = self.lines.iter().map(|l| if let Line::Row(k, _) = l { k.chars().count() } else { 0 }).max().unwrap_or(0);
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Section(t) => out.push_str(&format!("\n{t}\n")),
                Line::Row(k, v) => out.push_str(&format!("  {k:<width$}  {v}\n")),
                Line::Note(t) => out.push_str(&format!("  - {t}\n")),
            }
        }
        out
    }
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// KiB as MiB with one decimal.
pub fn kib_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Seconds with two decimals, or "n/a".
pub fn secs(s: Option<f64>) -> String {
    s.map_or("n/a".into(), |s| format!("{s:.2} s"))
}

/// Milliseconds with two decimals, or "n/a".
pub fn ms(s: Option<f64>) -> String {
    s.map_or("n/a".into(), |s| format!("{:.2} ms", s * 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_align_under_sections() {
        let mut t = Table::default();
        t.section("Size");
        t.row("ISO", "27 MiB");
        t.row("initramfs", "20 MiB");
        t.note("why");
        assert_eq!(t.render(), "\nSize\n  ISO        27 MiB\n  initramfs  20 MiB\n  - why\n");
    }

    #[test]
    fn units_format() {
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(kib_mib(2048), "2.0 MiB");
        assert_eq!(secs(Some(1.234)), "1.23 s");
        assert_eq!(secs(None), "n/a");
        assert_eq!(ms(Some(0.0015)), "1.50 ms");
    }
}
