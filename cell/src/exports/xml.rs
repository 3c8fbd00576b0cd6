//! A small XML writer that writes exclusive-c14n canonical form as it goes (explicit end tags,
//! escaped text, LF only), so what is hashed for a signature is exactly what is written.

/// Escapes text content as canonical XML does: `&`, `<`, `>` and CR.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an attribute value as canonical XML does: `&`, `<`, `"`, TAB, LF, CR.
pub fn attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// An indented document under construction.
pub struct Writer {
    pub out: String,
    open: Vec<&'static str>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { out: String::with_capacity(64 * 1024), open: Vec::new() }
    }

    fn indent(&mut self) {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    /// `<tag attrs>`: `attrs` already written as ` name="value"` pairs, in canonical order.
    pub fn open_with(&mut self, tag: &'static str, attrs: &str) -> &mut Self {
        self.indent();
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push_str(attrs);
        self.out.push('>');
        self.open.push(tag);
        self
    }

    pub fn open(&mut self, tag: &'static str) -> &mut Self {
        self.open_with(tag, "")
    }

    pub fn close(&mut self) -> &mut Self {
        let tag = self.open.pop().expect("an element is open");
        self.indent();
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// `<tag>text</tag>` on one line.
    pub fn leaf(&mut self, tag: &str, value: &str) -> &mut Self {
        self.indent();
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self.out.push_str(&text(value));
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}
