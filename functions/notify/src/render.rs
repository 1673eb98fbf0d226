//! Emails from notices. Each kind has a plain-text and an HTML template in
//! `templates/email/` (`<kind>.txt`, and `<kind>.html` extending `layout.html`), each with a
//! `subject` and a `body` block, compiled into the function. Rendering is strict: a field a
//! template names and the notice lacks is an error, and nothing is sent, never a half-filled
//! notice. Amounts are formatted from exact cents (`sgd`), times in Singapore time (`sgt`);
//! the HTML escapes what it shows.

use chrono::{DateTime, Utc};
use chrono_tz::Asia::Singapore;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};
use shared::app::notices::Notice;
use shared::domain::money::format_cents;

/// Each kind's two templates, compiled in.
macro_rules! kinds {
    ($($kind:literal),* $(,)?) => {
        [
            ("layout.html", include_str!("../templates/email/layout.html")),
            $(
                (concat!($kind, ".txt"), include_str!(concat!("../templates/email/", $kind, ".txt"))),
                (concat!($kind, ".html"), include_str!(concat!("../templates/email/", $kind, ".html"))),
            )*
        ]
    };
}

const TEMPLATES: [(&str, &str); 29] = kinds!(
    "deposit_credited",
    "deposit_returned",
    "withdrawal_paid",
    "withdrawal_failed",
    "subscription_received",
    "subscription_cancelled",
    "allocation_result",
    "dabs_issued",
    "trade_confirmed",
    "deal_published",
    "monthly_statement",
    "change_awaiting_checker",
    "settlement_leg_stuck",
    "reconciliation_finished",
);

/// An email's words, before addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the {kind} notice does not render: {source:#}")]
pub struct RenderError {
    pub kind: &'static str,
    #[source]
    source: Error,
}

pub struct Renderer {
    env: Environment<'static>,
    /// Templates that did not parse, with why (none, as a test proves; a function with
    /// any refuses to start).
    broken: Vec<RenderError>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    /// Compiles every template; see [`Renderer::broken`].
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.add_filter("sgd", sgd);
        env.add_filter("sgt", sgt_filter);
        let mut broken = Vec::new();
        for (name, source) in TEMPLATES {
            if let Err(source) = env.add_template(name, source) {
                broken.push(RenderError { kind: "template", source });
            }
        }
        Self { env, broken }
    }

    /// The templates that did not parse.
    pub fn broken(&self) -> &[RenderError] {
        &self.broken
    }

    pub fn email(&self, notice: &Notice) -> Result<RenderedEmail, RenderError> {
        let kind = notice.kind();
        let fail = |source| RenderError { kind, source };
        let context = Value::from_serialize(notice);
        let text = self.env.get_template(&format!("{kind}.txt")).map_err(fail)?;
        let mut captured = text.render_captured(&context).map_err(fail)?;
        let blocks = captured
            .with_state_mut(|state| Ok::<_, Error>((state.render_block("subject")?, state.render_block("body")?)));
        let (subject, body) = blocks.map_err(fail)?;
        let (subject, body) = (subject.trim().to_owned(), body.trim().to_owned() + "\n");
        let html = self.env.get_template(&format!("{kind}.html")).and_then(|t| t.render(&context)).map_err(fail)?;
        Ok(RenderedEmail { subject, text: body, html })
    }
}

/// Cents as dollars, exactly: `123456` is `1,234.56`.
pub(crate) fn sgd(cents: i128) -> String {
    let plain = format_cents(cents);
    let (sign, digits) = plain.strip_prefix('-').map_or(("", plain.as_str()), |d| ("-", d));
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}.{fraction}")
}

/// A UTC time as Singapore reads it: `1 Dec 2026, 09:30 SGT`.
pub(crate) fn sgt(at: DateTime<Utc>) -> String {
    at.with_timezone(&Singapore).format("%-d %b %Y, %H:%M SGT").to_string()
}

/// [`sgt`] for templates, from the notice's RFC 3339 text.
fn sgt_filter(at: String) -> Result<String, Error> {
    let at: DateTime<Utc> =
        at.parse().map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("not a time: {e}")))?;
    Ok(sgt(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::samples::every_kind;
    use shared::app::notices::Noted;

    #[test]
    fn every_kind_renders_its_subject_text_and_html() {
        let renderer = Renderer::new();
        assert!(renderer.broken().is_empty(), "{:?}", renderer.broken());
        for Noted { notice, .. } in every_kind() {
            let email = renderer.email(&notice).unwrap();
            let shown = format!("subject: {}\n\n{}\n----- html -----\n{}", email.subject, email.text, email.html);
            insta::assert_snapshot!(notice.kind(), shown);
        }
    }

    #[test]
    fn amounts_are_exact_and_grouped() {
        let cases = [(0, "0.00"), (5, "0.05"), (100, "1.00"), (123_456, "1,234.56"), (-10_000_001, "-100,000.01")];
        for (cents, shown) in cases {
            assert_eq!(sgd(cents), shown);
        }
        assert_eq!(sgd(1_000_000_000_000), "10,000,000,000.00", "the largest amount the platform holds");
    }

    #[test]
    fn a_template_that_names_a_missing_field_renders_nothing() {
        let mut renderer = Renderer::new();
        renderer
            .env
            .add_template(
                "deposit_credited.txt",
                "{% block subject %}{{ amount | sgd }}{% endblock %}{% block body %}{{ fee | sgd }}{% endblock %}",
            )
            .unwrap();
        let notice = &every_kind()[0].notice;
        let error = renderer.email(notice).unwrap_err();
        assert_eq!(error.kind, "deposit_credited");
        assert!(error.to_string().contains("undefined"), "{error}");
    }

    #[test]
    fn what_a_notice_shows_is_escaped_in_html_and_kept_in_text() {
        let email = Renderer::new().email(&every_kind()[6].notice).unwrap();
        assert!(email.html.contains("Résidence Étoile &lt;Office&gt; &amp; Retail"), "{}", email.html);
        assert!(email.text.contains("Résidence Étoile <Office> & Retail"), "{}", email.text);
        assert!(!email.subject.contains('\n'));
    }
}
