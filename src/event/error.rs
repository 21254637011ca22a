//! Parse errors that say where a body broke, never what it contained.

use super::ParseError;

/// serde_json's fixed messages, which never quote input. Anything else (a custom message could
/// carry body content) is reported by category only.
const KNOWN_MESSAGES: [&str; 22] = [
    "EOF while parsing a list",
    "EOF while parsing an object",
    "EOF while parsing a string",
    "EOF while parsing a value",
    "expected `:`",
    "expected `,` or `]`",
    "expected `,` or `}`",
    "expected ident",
    "expected value",
    "expected `\"`",
    "invalid escape",
    "invalid number",
    "number out of range",
    "invalid unicode code point",
    "control character (\\u0000-\\u001F) found while parsing a string",
    "key must be a string",
    "float key must be finite (got NaN or +/-inf)",
    "lone leading surrogate in hex escape",
    "trailing comma",
    "trailing characters",
    "unexpected end of hex escape",
    "recursion limit exceeded",
];

pub(crate) fn syntax_error(err: serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    let fallback = match err.classify() {
        Category::Eof => "EOF while parsing",
        Category::Syntax => "syntax error",
        Category::Data => "invalid data",
        Category::Io => "I/O error",
    };
    let message = if err.classify() == Category::Data {
        fallback
    } else {
        let text = err.to_string();
        KNOWN_MESSAGES
            .iter()
            .copied()
            .find(|m| text.starts_with(m))
            .unwrap_or(fallback)
    };
    ParseError::Syntax {
        message: message.to_owned(),
        line: err.line(),
        column: err.column(),
    }
}

/// Line and column (1-based, in bytes, like serde_json's) of the first invalid byte.
pub(crate) fn utf8_error(raw: &[u8], err: std::str::Utf8Error) -> ParseError {
    let before = raw.get(..err.valid_up_to()).unwrap_or(raw);
    let line = 1 + memchr::memchr_iter(b'\n', before).count();
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    ParseError::Syntax {
        message: "invalid UTF-8".to_owned(),
        line,
        column: before.len() - line_start + 1,
    }
}
