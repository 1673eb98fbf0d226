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

const TEMPLATES: [(&str, &str); 7] = [
    ("layout.html", include_str!("../templates/email/layout.html")),
    ("deposit_credited.txt", include_str!("../templates/email/deposit_credited.txt")),
    ("deposit_credited.html", include_str!("../templates/email/deposit_credited.html")),
    ("allocation_result.txt", include_str!("../templates/email/allocation_result.txt")),
    ("allocation_result.html", include_str!("../templates/email/allocation_result.html")),
    ("reconciliation_finished.txt", include_str!("../templates/email/reconciliation_finished.txt")),
    ("reconciliation_finished.html", include_str!("../templates/email/reconciliation_finished.html")),
];

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
}

impl Renderer {
    /// Compiles every template; a template that does not parse is an error here, at start.
    pub fn new() -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.add_filter("sgd", sgd);
        env.add_filter("sgt", sgt);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).map_err(|source| RenderError { kind: "template", source })?;
        }
        Ok(Self { env })
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
fn sgd(cents: i128) -> String {
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
fn sgt(at: String) -> Result<String, Error> {
    let at: DateTime<Utc> =
        at.parse().map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("not a time: {e}")))?;
    Ok(at.with_timezone(&Singapore).format("%-d %b %Y, %H:%M SGT").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// One notice of each kind, as a test would meet it.
    fn every_kind() -> Vec<Notice> {
        vec![
            Notice::DepositCredited {
                amount: 1_234_567,
                balance: 250_000_000,
                bank_reference: "DBS-20261201-0042".into(),
                at: at("2026-12-01T01:30:00Z"),
            },
            Notice::AllocationResult {
                deal_name: "Marina Tower <Office> & Retail".into(),
                subscription_id: "sub_01".into(),
                requested: 1_000,
                allocated: 333,
                ratio: "0.333333333333333".into(),
                unit_price: 10_000,
                charged: 3_330_000,
                refunded: 6_670_000,
                at: at("2026-12-08T02:00:00Z"),
            },
            Notice::ReconciliationFinished {
                run_id: "recon_01".into(),
                cut_off: at("2026-12-01T14:00:00Z"),
                verdict: shared::domain::reconcile::RunVerdict::Breaks,
                breaks: 2,
                timing: 5,
                resolved: 1,
            },
        ]
    }

    #[test]
    fn every_kind_renders_its_subject_text_and_html() {
        let renderer = Renderer::new().unwrap();
        for notice in every_kind() {
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
        let mut renderer = Renderer::new().unwrap();
        renderer
            .env
            .add_template(
                "deposit_credited.txt",
                "{% block subject %}{{ amount | sgd }}{% endblock %}{% block body %}{{ fee | sgd }}{% endblock %}",
            )
            .unwrap();
        let notice = &every_kind()[0];
        let error = renderer.email(notice).unwrap_err();
        assert_eq!(error.kind, "deposit_credited");
        assert!(error.to_string().contains("undefined"), "{error}");
    }

    #[test]
    fn what_a_notice_shows_is_escaped_in_html_and_kept_in_text() {
        let email = Renderer::new().unwrap().email(&every_kind()[1]).unwrap();
        assert!(email.html.contains("Marina Tower &lt;Office&gt; &amp; Retail"), "{}", email.html);
        assert!(email.text.contains("Marina Tower <Office> & Retail"), "{}", email.text);
        assert!(!email.subject.contains('\n'));
    }
}
