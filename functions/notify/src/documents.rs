//! PDF documents from notices, typeset by Typst as a library.
//!
//! Each document has a template in `templates/pdf/` (`<document>.typ`, sharing
//! `common.typ`), compiled into the function with the fonts Typst ships (Libertinus Serif,
//! New Computer Modern, DejaVu Sans Mono): no file or font is read from the machine. A
//! template reads its notice from the virtual file `/notice.json`: the facts as stored, and
//! under `shown` each amount in cents as grouped dollars and each time in Singapore time.
//! A template that names a field the notice lacks fails to compile: no half-filled
//! document. Rendering is deterministic: no clock is read (the document carries no
//! creation date, its PDF identifier comes from the notice's id), so the same notice
//! renders to the same bytes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use shared::app::notices::Noted;
use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Smart};
use typst::layout::PagedDocument;
use typst::syntax::{FileId, Source, VirtualPath};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, World};

use crate::render::{sgd, sgt};

const TEMPLATES: [(&str, &str); 7] = [
    ("common.typ", include_str!("../templates/pdf/common.typ")),
    ("deposit_advice.typ", include_str!("../templates/pdf/deposit_advice.typ")),
    ("withdrawal_advice.typ", include_str!("../templates/pdf/withdrawal_advice.typ")),
    ("allocation_notice.typ", include_str!("../templates/pdf/allocation_notice.typ")),
    ("contract_note.typ", include_str!("../templates/pdf/contract_note.typ")),
    ("trade_contract_note.typ", include_str!("../templates/pdf/trade_contract_note.typ")),
    ("account_statement.typ", include_str!("../templates/pdf/account_statement.typ")),
];

const NOTICE_FILE: &str = "/notice.json";

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("the {0} notice has no document")]
    None(&'static str),
    #[error("no template {0}")]
    NoTemplate(String),
    #[error("the {document} document does not typeset: {message}")]
    Typeset { document: &'static str, message: String },
}

/// The templates and fonts, loaded once; renders any number of documents.
pub struct Documents {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
    sources: HashMap<FileId, Source>,
}

impl Default for Documents {
    fn default() -> Self {
        Self::new()
    }
}

fn file_id(path: &str) -> FileId {
    FileId::new(None, VirtualPath::new(path))
}

impl Documents {
    pub fn new() -> Self {
        let fonts: Vec<Font> = typst_assets::fonts().flat_map(|data| Font::iter(Bytes::new(data))).collect();
        let sources = TEMPLATES
            .iter()
            .map(|(name, text)| {
                let id = file_id(&format!("/{name}"));
                (id, Source::new(id, (*text).to_owned()))
            })
            .collect();
        Self {
            library: LazyHash::new(Library::builder().build()),
            book: LazyHash::new(FontBook::from_fonts(&fonts)),
            fonts,
            sources,
        }
    }

    /// The notice's document as PDF bytes.
    pub fn render(&self, noted: &Noted) -> Result<Vec<u8>, DocumentError> {
        let document = noted.notice.document().ok_or(DocumentError::None(noted.notice.kind()))?;
        let main = file_id(&format!("/{document}.typ"));
        if !self.sources.contains_key(&main) {
            return Err(DocumentError::NoTemplate(document.to_owned()));
        }
        let data = serde_json::to_vec(&shown(noted))
            .map_err(|e| DocumentError::Typeset { document, message: e.to_string() })?;
        let world = NoticeWorld { documents: self, main, data: Bytes::new(data) };
        let fail = |diagnostics: Vec<SourceDiagnostic>| DocumentError::Typeset {
            document,
            message: diagnostics.iter().map(|d| d.message.as_str()).collect::<Vec<_>>().join("; "),
        };
        let paged: Result<PagedDocument, _> = typst::compile(&world).output.map_err(|d| fail(d.to_vec()));
        let options = typst_pdf::PdfOptions { ident: Smart::Custom(&noted.id), ..Default::default() };
        let pdf = paged.and_then(|paged| typst_pdf::pdf(&paged, &options).map_err(|d| fail(d.to_vec())));
        // What this document alone memoised goes after the next one; what every document
        // uses (the templates, the fonts) is used again and stays.
        comemo::evict(2);
        pdf
    }
}

/// What a template reads: the notice's facts, its id and time, and in each object
/// `shown`: its whole numbers as grouped dollars (amounts are cents) and its times in
/// Singapore time. A holding also shows its `value`, units at the last price.
fn shown(noted: &Noted) -> Value {
    let mut facts = match with_shown(serde_json::to_value(&noted.notice).unwrap_or(Value::Null)) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    facts.insert("notice_id".into(), Value::String(noted.id.clone()));
    facts.insert("written".into(), Value::String(sgt(noted.at)));
    Value::Object(facts)
}

fn with_shown(value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut shown = Map::new();
            for (field, value) in &fields {
                if let Some(cents) = value.as_i64() {
                    shown.insert(field.clone(), Value::String(sgd(i128::from(cents))));
                } else if let Some(at) = value.as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()) {
                    shown.insert(field.clone(), Value::String(sgt(at)));
                }
            }
            if let (Some(units), Some(price)) = (fields.get("units"), fields.get("last_price"))
                && let (Some(units), Some(price)) = (units.as_u64(), price.as_u64())
            {
                let value = i128::from(units) * i128::from(price);
                shown.insert("value".into(), Value::String(sgd(value)));
            }
            let mut fields: Map<String, Value> = fields.into_iter().map(|(k, v)| (k, with_shown(v))).collect();
            fields.insert("shown".into(), Value::Object(shown));
            Value::Object(fields)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(with_shown).collect()),
        other => other,
    }
}

/// One compilation's world: the compiled-in templates and fonts, and the notice.
struct NoticeWorld<'a> {
    documents: &'a Documents,
    main: FileId,
    data: Bytes,
}

impl World for NoticeWorld<'_> {
    fn library(&self) -> &LazyHash<Library> {
        &self.documents.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &self.documents.book
    }

    fn main(&self) -> FileId {
        self.main
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        self.documents
            .sources
            .get(&id)
            .cloned()
            .ok_or_else(|| FileError::NotFound(id.vpath().as_rootless_path().into()))
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == file_id(NOTICE_FILE) {
            return Ok(self.data.clone());
        }
        match self.documents.sources.get(&id) {
            Some(source) => Ok(Bytes::new(source.text().as_bytes().to_vec())),
            None => Err(FileError::NotFound(id.vpath().as_rootless_path().into())),
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.documents.fonts.get(index).cloned()
    }

    /// No clock: a document shows the times of its notice, never of its rendering.
    fn today(&self, _offset: Option<i64>) -> Option<Datetime> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::samples::every_kind;

    /// The text `pdftotext` reads from a PDF, its layout kept.
    fn text_of(pdf: &[u8]) -> String {
        let mut child = Command::new("pdftotext")
            .args(["-layout", "-", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("pdftotext (poppler-utils; ./infra/test.sh installs it)");
        child.stdin.take().unwrap().write_all(pdf).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }

    fn sha256(bytes: &[u8]) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn with_documents() -> Vec<Noted> {
        every_kind().into_iter().filter(|n| n.notice.document().is_some()).collect()
    }

    #[test]
    fn every_document_renders_to_the_same_bytes_every_time() {
        let documents = Documents::new();
        let again = Documents::new();
        let mut checksums = String::new();
        for noted in with_documents() {
            let first = documents.render(&noted).unwrap();
            assert!(first.starts_with(b"%PDF-"), "{}", noted.notice.kind());
            assert_eq!(first, documents.render(&noted).unwrap(), "{} twice", noted.notice.kind());
            assert_eq!(first, again.render(&noted).unwrap(), "{} from a new renderer", noted.notice.kind());
            checksums += &format!("{}: {}\n", noted.notice.kind(), sha256(&first));
        }
        // A change to a template, a font or Typst changes these: review the documents, then
        // accept the new sums.
        insta::assert_snapshot!("document_checksums", checksums);
    }

    #[test]
    fn every_document_says_its_facts_in_extractable_text_accents_included() {
        let documents = Documents::new();
        for noted in with_documents() {
            let text = text_of(&documents.render(&noted).unwrap());
            let kind = noted.notice.kind();
            assert!(text.contains(&noted.id), "{kind}: the notice id\n{text}");
            assert!(text.contains("Singapore time"), "{kind}\n{text}");
            insta::assert_snapshot!(format!("pdf_{kind}"), text);
        }
    }

    #[test]
    fn a_deposit_advice_names_its_amount_and_an_allocation_notice_its_ratio_and_accented_offering() {
        let documents = Documents::new();
        let all = every_kind();
        let deposit = text_of(&documents.render(&all[0]).unwrap());
        assert!(deposit.contains("Deposit advice") && deposit.contains("S$12,345.67"), "{deposit}");
        let allocation = text_of(&documents.render(&all[6]).unwrap());
        assert!(allocation.contains("0.333333333333333"), "{allocation}");
        assert!(allocation.contains("Résidence Étoile <Office> & Retail"), "{allocation}");
        assert!(allocation.contains("S$66,700.00"), "the amount released: {allocation}");
    }

    #[test]
    fn a_notice_without_a_document_has_none_and_a_missing_field_typesets_nothing() {
        let documents = Documents::new();
        let news = &every_kind()[9];
        assert!(matches!(documents.render(news), Err(DocumentError::None("deal_published"))));
        // A deposit advice whose facts lack the bank reference (a template and a notice
        // out of step): an error, never a document with a hole.
        let mut noted = every_kind()[0].clone();
        noted.notice =
            shared::app::notices::Notice::WithdrawalPaid { withdrawal_id: "wd_01".into(), amount: 1, at: noted.at };
        let mut world_sources = documents.sources.clone();
        world_sources.insert(
            file_id("/withdrawal_advice.typ"),
            Source::new(file_id("/withdrawal_advice.typ"), "#import \"common.typ\": *\n#notice.bank_reference".into()),
        );
        let broken = Documents { sources: world_sources, ..Documents::new() };
        let error = broken.render(&noted).unwrap_err();
        assert!(error.to_string().contains("bank_reference"), "{error}");
    }
}
