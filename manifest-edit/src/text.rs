//! Byte-level scanning of the source between the parser's spans: lines, line endings,
//! indentation, and the "rest of the line" after a node (where a trailing comment lives).
//!
//! All positions are byte offsets into the UTF-8 source. Every helper clamps its input to
//! the text, so a stale or out-of-range offset can never panic.

/// Start of the line containing `pos`.
pub(crate) fn line_start(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()
        .get(..pos)
        .and_then(|b| b.iter().rposition(|&c| c == b'\n'))
        .map_or(0, |i| i + 1)
}

/// Offset where the line containing `pos` ends, before its line break (`\n` or `\r\n`).
pub(crate) fn content_end(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    let pos = pos.min(text.len());
    let nl = bytes
        .get(pos..)
        .and_then(|b| b.iter().position(|&c| c == b'\n'))
        .map_or(text.len(), |i| pos + i);
    if nl > 0 && nl < text.len() && bytes.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    }
}

/// Offset of the start of the next line (after the line break of the line containing
/// `pos`), or the end of the text when that line has no line break.
pub(crate) fn next_line_start(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()
        .get(pos..)
        .and_then(|b| b.iter().position(|&c| c == b'\n'))
        .map_or(text.len(), |i| pos + i + 1)
}

/// The line break that ends the line containing `pos`: `"\r\n"`, `"\n"`, or `""` when the
/// line is the last one and has no line break.
pub(crate) fn line_break_at(text: &str, pos: usize) -> &'static str {
    let end = content_end(text, pos);
    match text.as_bytes().get(end) {
        Some(b'\r') => "\r\n",
        Some(b'\n') => "\n",
        _ => "",
    }
}

/// The line break style of the file: that of its first line break, `"\n"` if it has none.
pub(crate) fn default_line_break(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes().get(i - 1) == Some(&b'\r') => "\r\n",
        _ => "\n",
    }
}

/// Whether everything between the start of the line and `pos` is spaces.
pub(crate) fn only_spaces_before(text: &str, pos: usize) -> bool {
    let start = line_start(text, pos);
    text.get(start..pos.min(text.len()))
        .is_some_and(|s| s.bytes().all(|c| c == b' '))
}

/// 1-based line and 1-based character column of a byte offset.
pub(crate) fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = text.get(..pos).unwrap_or("");
    let line = before.bytes().filter(|&c| c == b'\n').count() + 1;
    let start = line_start(text, pos);
    let col = text.get(start..pos).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_breaks() {
        let t = "a: 1\r\nb: 2\nc";
        assert_eq!(line_start(t, 0), 0);
        assert_eq!(line_start(t, 7), 6);
        assert_eq!(content_end(t, 0), 4);
        assert_eq!(content_end(t, 6), 10);
        assert_eq!(content_end(t, 11), 12);
        assert_eq!(next_line_start(t, 0), 6);
        assert_eq!(next_line_start(t, 11), 12);
        assert_eq!(line_break_at(t, 1), "\r\n");
        assert_eq!(line_break_at(t, 7), "\n");
        assert_eq!(line_break_at(t, 11), "");
        assert_eq!(default_line_break(t), "\r\n");
        assert_eq!(default_line_break("x"), "\n");
    }

    #[test]
    fn out_of_range_offsets_do_not_panic() {
        let t = "ab";
        assert_eq!(line_start(t, 99), 0);
        assert_eq!(content_end(t, 99), 2);
        assert_eq!(next_line_start(t, 99), 2);
        assert_eq!(line_col(t, 99), (1, 3));
    }

    #[test]
    fn columns_count_characters() {
        let t = "# д\nx: é1";
        assert_eq!(line_col(t, t.len()), (2, 6));
    }

    #[test]
    fn spaces_before() {
        let t = "  - a   # c\n  - b";
        assert!(only_spaces_before(t, 2));
        assert!(!only_spaces_before(t, 4));
    }
}
