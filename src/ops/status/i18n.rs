//! The status page's languages: one catalogue per locale (assets/i18n/*.json, the only place its
//! strings are written), the choice per request (the switch's cookie, else `Accept-Language`),
//! and the page templates rendered once per language, so the first paint is already in it.
//!
//! Templates name strings as `{{t:key}}`; `{{lang}}`, `{{catalogue}}` (the JSON the script
//! reads its own strings from) and `{{switch}}` are filled here too; per-request fields
//! (`{{csrf}}`, `{{notice}}`) are left for the routes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::HttpRequest;

const EN_JSON: &str = include_str!("assets/i18n/en.json");
const PT_BR_JSON: &str = include_str!("assets/i18n/pt-BR.json");
const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");

/// The cookie the language switch sets.
pub const COOKIE: &str = "relay_lang";
/// How long the switch's choice is remembered.
const COOKIE_DAYS: i64 = 365;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    PtBr,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::PtBr, Lang::En];

    /// The BCP 47 tag, as in `<html lang>`, the catalogue's file name and the cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::PtBr => "pt-BR",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == code)
    }

    /// Portuguese for any `pt` range (pt, pt-BR, pt-PT) the client ranks above every `en` one;
    /// English otherwise, also for a client naming neither.
    pub fn negotiate(accept_language: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for range in accept_language.split(',') {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            let primary = tag.split('-').next().unwrap_or_default();
            let lang = if primary.eq_ignore_ascii_case("pt") {
                Lang::PtBr
            } else if primary.eq_ignore_ascii_case("en") {
                Lang::En
            } else {
                continue;
            };
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            // Ties keep the first named: the header lists by preference.
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    /// The switch's remembered choice, else the browser's languages.
    pub fn of(req: &HttpRequest) -> Lang {
        if let Some(lang) = req.cookie(COOKIE).and_then(|c| Lang::from_code(c.value())) {
            return lang;
        }
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map_or(Lang::En, Lang::negotiate)
    }

    fn index(self) -> usize {
        match self {
            Lang::En => 0,
            Lang::PtBr => 1,
        }
    }
}

/// The cookie remembering `lang`; `Secure` when the request came over HTTPS, as the session's.
pub fn cookie(req: &HttpRequest, lang: Lang) -> Cookie<'static> {
    Cookie::build(COOKIE, lang.code())
        .path("/status")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(req.connection_info().scheme() == "https")
        .max_age(actix_web::cookie::time::Duration::days(COOKIE_DAYS))
        .finish()
}

type Catalogue = BTreeMap<String, String>;

fn source(lang: Lang) -> &'static str {
    match lang {
        Lang::En => EN_JSON,
        Lang::PtBr => PT_BR_JSON,
    }
}

fn catalogue(lang: Lang) -> &'static Catalogue {
    static PARSED: [OnceLock<Catalogue>; 2] = [OnceLock::new(), OnceLock::new()];
    PARSED[lang.index()].get_or_init(|| {
        // Embedded at build time and checked by the tests below: not input.
        serde_json::from_str(source(lang))
            .expect("the embedded catalogue is a JSON object of strings")
    })
}

/// The string for `key`; the key itself where a catalogue lacks it (the tests forbid that).
pub fn text(lang: Lang, key: &str) -> &str {
    catalogue(lang).get(key).map_or(key, String::as_str)
}

/// What the login form says above itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    Nothing,
    Refused,
    CrossOrigin,
    Throttled,
    NoSession,
}

impl Notice {
    fn key(self) -> Option<&'static str> {
        match self {
            Notice::Nothing => None,
            Notice::Refused => Some("login.refused"),
            Notice::CrossOrigin => Some("login.cross_origin"),
            Notice::Throttled => Some("login.throttled"),
            Notice::NoSession => Some("login.no_session"),
        }
    }

    pub fn text(self, lang: Lang) -> String {
        self.key()
            .map(|k| escape(text(lang, k)))
            .unwrap_or_default()
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Both languages' names, each in its own language, the current one marked.
fn switch(lang: Lang) -> String {
    let mut html = format!(
        r#"<nav class="lang" aria-label="{}">"#,
        escape(text(lang, "lang.switch"))
    );
    for other in Lang::ALL {
        let current = if other == lang {
            r#" aria-current="true""#
        } else {
            ""
        };
        html.push_str(&format!(
            r#"<a href="/status/lang/{code}" hreflang="{code}" lang="{code}" data-lang="{code}"{current}>{name}</a>"#,
            code = other.code(),
            name = escape(text(other, "lang.name")),
        ));
    }
    html.push_str("</nav>");
    html
}

/// `template` with its strings and language fields filled for `lang`.
fn render(template: &str, lang: Lang) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let field = &after[..end];
        match field {
            "lang" => out.push_str(lang.code()),
            "switch" => out.push_str(&switch(lang)),
            // Inside <script type="application/json">: no `<` may close the element early.
            "catalogue" => out.push_str(&source(lang).replace('<', "\\u003c")),
            _ => match field.strip_prefix("t:") {
                Some(key) => out.push_str(&escape(text(lang, key))),
                None => out.push_str(&rest[start..start + 2 + end + 2]),
            },
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The page and the login form in `lang`, rendered on first use.
pub fn pages(lang: Lang) -> &'static (String, String) {
    static RENDERED: [OnceLock<(String, String)>; 2] = [OnceLock::new(), OnceLock::new()];
    RENDERED[lang.index()].get_or_init(|| (render(INDEX_HTML, lang), render(LOGIN_HTML, lang)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const SCRIPTS: [&str; 2] = [
        include_str!("assets/status.js"),
        include_str!("assets/events.js"),
    ];

    /// The `{name}` fields of a string, which a translation must keep.
    fn fields(text: &str) -> BTreeSet<&str> {
        text.split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(name, _)| name))
            .collect()
    }

    /// Every `prefix...suffix` occurrence's inside.
    fn between<'a>(text: &'a str, prefix: &str, suffix: &str) -> Vec<&'a str> {
        text.split(prefix)
            .skip(1)
            .filter_map(|s| s.split_once(suffix).map(|(inside, _)| inside))
            .collect()
    }

    /// The keys of the script's `t("key"` calls (not `set("id"` and the like).
    fn js_keys(script: &str) -> Vec<&str> {
        let mut keys = Vec::new();
        let mut rest = script;
        while let Some(at) = rest.find("t(\"") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + 3..];
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                if let Some((key, _)) = after.split_once('"') {
                    keys.push(key);
                }
            }
            rest = after;
        }
        keys
    }

    #[test]
    fn the_catalogues_have_the_same_keys_and_fields() {
        let en = catalogue(Lang::En);
        let pt = catalogue(Lang::PtBr);
        let en_keys: BTreeSet<_> = en.keys().collect();
        let pt_keys: BTreeSet<_> = pt.keys().collect();
        assert_eq!(
            en_keys.symmetric_difference(&pt_keys).collect::<Vec<_>>(),
            Vec::<&&String>::new(),
            "keys in one catalogue only"
        );
        for (key, en_text) in en {
            let pt_text = &pt[key];
            assert!(
                !en_text.trim().is_empty() && !pt_text.trim().is_empty(),
                "{key} is empty"
            );
            assert_eq!(fields(en_text), fields(pt_text), "{key}: the fields differ");
        }
    }

    /// Strings Brazilian readers know in their English form (product and technical names, unit
    /// symbols): the only ones the two catalogues may share, so none is left untranslated.
    const SAME_IN_BOTH: [&str; 12] = [
        "title.page",
        "header.broker_loading",
        "broker.title",
        "outbox.bytes",
        "dead.ticket",
        "events.ticket",
        "unit.per_sec",
        "unit.ms",
        "unit.secs",
        "unit.mins",
        "unit.hours",
        "unit.days",
    ];

    #[test]
    fn only_technical_names_are_the_same_in_both_languages() {
        let en = catalogue(Lang::En);
        let pt = catalogue(Lang::PtBr);
        let same: Vec<&str> = en
            .iter()
            .filter(|(key, text)| pt.get(*key) == Some(text))
            .map(|(key, _)| key.as_str())
            .collect();
        let mut allowed = SAME_IN_BOTH.to_vec();
        allowed.sort_unstable();
        assert_eq!(
            same, allowed,
            "untranslated strings, or a translated one still listed"
        );
    }

    #[test]
    fn every_key_the_page_uses_is_in_both_catalogues_and_every_key_is_used() {
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for template in [INDEX_HTML, LOGIN_HTML] {
            used.extend(between(template, "{{t:", "}}"));
        }
        // The scripts name their strings only as literal `t("key"` calls.
        for script in SCRIPTS {
            used.extend(js_keys(script));
        }
        used.extend(["lang.name", "lang.switch"]);
        let notices = [
            Notice::Refused,
            Notice::CrossOrigin,
            Notice::Throttled,
            Notice::NoSession,
        ];
        used.extend(notices.iter().filter_map(|n| n.key()));
        assert!(used.len() > 50, "too few keys found: {used:?}");
        for lang in Lang::ALL {
            let missing: Vec<_> = used
                .iter()
                .filter(|k| !catalogue(lang).contains_key(**k))
                .collect();
            assert!(missing.is_empty(), "{} lacks {missing:?}", lang.code());
        }
        let unused: Vec<_> = catalogue(Lang::En)
            .keys()
            .filter(|k| !used.contains(k.as_str()))
            .collect();
        assert!(unused.is_empty(), "keys no page uses: {unused:?}");
    }

    #[test]
    fn rendered_pages_carry_no_unfilled_string_and_their_language() {
        for lang in Lang::ALL {
            let (index, login) = pages(lang);
            for page in [index, login] {
                assert!(page.contains(&format!(r#"<html lang="{}">"#, lang.code())));
                let left: Vec<_> = between(page, "{{", "}}");
                assert!(
                    left.iter().all(|f| ["csrf", "notice"].contains(f)),
                    "{}: unfilled {left:?}",
                    lang.code()
                );
                assert!(page.contains(r#"aria-current="true""#));
            }
            let json = between(
                index,
                r#"<script type="application/json" id="i18n">"#,
                "</script>",
            );
            let parsed: Catalogue = serde_json::from_str(json[0]).unwrap();
            assert_eq!(&parsed, catalogue(lang));
        }
        assert!(pages(Lang::PtBr).0.contains("Conexões"));
        assert!(pages(Lang::En).0.contains("Connections"));
    }

    #[test]
    fn accept_language_picks_portuguese_for_any_pt_range_ranked_first() {
        for header in [
            "pt",
            "pt-BR",
            "pt-PT",
            "pt-BR,pt;q=0.9,en;q=0.8",
            "es, pt;q=0.8",
            "en;q=0.5, pt-br",
        ] {
            assert_eq!(Lang::negotiate(header), Lang::PtBr, "{header}");
        }
        for header in [
            "",
            "en",
            "en-US,en;q=0.9",
            "de-DE",
            "*",
            "en, pt;q=0.9",
            "pt;q=0, en;q=0.1",
            "fr, en-GB;q=0.4, pt;q=0.3",
        ] {
            assert_eq!(Lang::negotiate(header), Lang::En, "{header}");
        }
    }

    #[test]
    fn strings_are_escaped_where_they_go_into_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let rendered = render("<p>{{t:no.such.key}}</p>{{csrf}}", Lang::En);
        assert_eq!(rendered, "<p>no.such.key</p>{{csrf}}");
    }
}
