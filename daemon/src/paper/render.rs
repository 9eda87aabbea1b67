//! The paper feuille de soins as a PDF: the lines of the duplicate ([`lines`]) laid out on A4
//! pages in the base-14 Helvetica (nothing embedded), WinAnsi-encoded so that accented Latin-9
//! names print and `pdftotext` reads them back. Pure and deterministic: the same sheet, lot and
//! reason give the same bytes (no clock: the only time in the file is the sheet's own).

use fse_formats::fse::{Act, CarePath, CareSheet, CoverKind, Mode, RightsSource};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::text::{coefficient, date, euros, time, win_ansi, wrap};

/// What a duplicate shows besides the sheet itself.
#[derive(Debug, Clone, Copy)]
pub struct Duplicate<'a> {
    /// The sheet, decoded from its stored DER.
    pub sheet: &'a CareSheet,
    /// Its lot, once in one (`None`: "hors lot").
    pub lot_id: Option<&'a str>,
    /// Why this duplicate was made.
    pub reason: &'a str,
}

/// A4, in points.
const PAGE: (f32, f32) = (595.0, 842.0);
/// Left margin and the first baseline from the bottom, in points.
const LEFT: f32 = 48.0;
const TOP: f32 = 790.0;
/// The lowest baseline of the body: below it, the footer.
const BOTTOM: f32 = 64.0;
/// Body text size and line spacing, in points.
const SIZE: f32 = 9.5;
const LEADING: f32 = 13.0;
/// Characters of a wrapped text line (Helvetica 9.5 pt averages about 5 pt a character; the
/// body is 499 pt wide).
const WIDTH: usize = 95;
/// The x of each column of the acts' table.
const ACT_COLUMNS: [f32; 9] = [
    LEFT,
    LEFT + 60.0,
    LEFT + 110.0,
    LEFT + 150.0,
    LEFT + 180.0,
    LEFT + 240.0,
    LEFT + 300.0,
    LEFT + 340.0,
    LEFT + 410.0,
];

/// One line of the body: its style and its cells (x, text).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Line {
    bold: bool,
    cells: Vec<(f32, String)>,
}

impl Line {
    fn text(s: impl Into<String>) -> Line {
        Line {
            bold: false,
            cells: vec![(LEFT, s.into())],
        }
    }

    fn heading(s: impl Into<String>) -> Line {
        Line {
            bold: true,
            cells: vec![(LEFT, s.into())],
        }
    }

    fn blank() -> Line {
        Line::text("")
    }
}

/// `label : value`, cut to lines of [`WIDTH`] characters.
fn field(out: &mut Vec<Line>, label: &str, value: &str) {
    for line in wrap(&format!("{label} : {value}"), WIDTH) {
        out.push(Line::text(line));
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "oui"
    } else {
        "non"
    }
}

/// The sheet's mode in words.
fn mode(sheet: &CareSheet) -> String {
    match sheet.mode {
        Mode::Secured => "sécurisé (carte Vitale)".into(),
        Mode::Degraded => "dégradé (sans carte Vitale)".into(),
        Mode::App => "application carte Vitale".into(),
    }
}

/// Where the rights the sheet was priced on came from, and when they were read.
fn rights(sheet: &CareSheet) -> String {
    let Some(r) = &sheet.rights else {
        return match sheet.mode {
            Mode::Degraded => "saisis (attestation papier)".into(),
            _ => "lus sur la carte Vitale".into(),
        };
    };
    let source = match r.source {
        RightsSource::Card => "lus sur la carte Vitale",
        RightsSource::Online => "service de droits en ligne",
        RightsSource::App => "application carte Vitale",
    };
    let mut out = format!("{source}, le {}", time(&r.read_at));
    if let Some(why) = &r.fallback {
        out.push_str(&format!(" (consultation en ligne impossible : {why})"));
    }
    out
}

/// The heading lines: what the paper is, which sheet, which lot, when, how it was made.
fn heading(d: &Duplicate<'_>, out: &mut Vec<Line>) {
    let s = d.sheet;
    out.push(Line::heading("Feuille de soins — duplicata"));
    out.push(Line::blank());
    field(out, "Feuille n°", &s.number.to_string());
    field(out, "Lot", d.lot_id.unwrap_or("hors lot"));
    field(out, "Créée le", &time(&s.created_at));
    field(out, "Mode", &mode(s));
    if let Some(reason) = &s.degraded_reason {
        field(out, "Motif du mode dégradé", reason);
    }
    field(out, "Date limite d'envoi", &date(&s.deadline));
    field(out, "Motif du duplicata", d.reason);
}

/// The practitioner (and the one replaced) and the beneficiary.
fn people(s: &CareSheet, out: &mut Vec<Line>) {
    let p = &s.practitioner;
    out.push(Line::blank());
    out.push(Line::heading("Praticien"));
    field(out, "Nom", &format!("{} {}", p.given_name, p.surname));
    field(
        out,
        "Profession",
        &format!("{} (spécialité {})", p.profession, p.specialty),
    );
    field(out, "Identifiant national", &p.national_id);
    field(out, "N° de facturation", &p.billing_number);
    if let Some(r) = &s.replaced {
        field(
            out,
            "Remplace",
            &format!(
                "{} {} ({}, n° de facturation {})",
                r.given_name, r.surname, r.national_id, r.billing_number
            ),
        );
    }
    field(out, "Payé à (n° de facturation)", s.payee_billing_number());
    let b = &s.beneficiary;
    out.push(Line::blank());
    out.push(Line::heading("Bénéficiaire"));
    field(out, "Nom", &format!("{} {}", b.given_name, b.surname));
    field(out, "NIR", &b.nir);
    field(out, "Né(e) le", &date(&b.birth_date));
    field(out, "Rang", &b.rank.to_string());
    field(out, "Organisme (AMO)", &b.organism);
    let c = &s.cover;
    let mut cover = match c.kind {
        CoverKind::Maladie => "maladie",
        CoverKind::Maternite => "maternité",
        CoverKind::AtMp => "accident du travail / maladie professionnelle",
    }
    .to_string();
    if c.ald {
        cover.push_str(", ALD");
    }
    if c.css {
        cover.push_str(", CSS");
    }
    if let Some(at) = &c.at_mp {
        cover.push_str(&format!(", AT/MP n° {} du {}", at.number, date(&at.date)));
    }
    let path = match s.care_path {
        CarePath::Treating => "médecin traitant",
        CarePath::DirectAccess => "accès direct spécifique",
        CarePath::Emergency => "urgence ou hors résidence",
        CarePath::OutOfPath => "hors parcours de soins",
        CarePath::NotApplicable => "sans objet",
    };
    field(out, "Parcours de soins", path);
    field(out, "Couverture", &cover);
    field(out, "Droits", &rights(s));
}

/// One act as a row of the table.
fn act_row(a: &Act) -> Line {
    let code = if a.modifiers.is_empty() {
        a.code.clone()
    } else {
        format!("{} {}", a.code, a.modifiers.join(" "))
    };
    let texts = [
        date(&a.date),
        code,
        coefficient(a.coefficient),
        a.quantity.to_string(),
        euros(a.base_cents),
        euros(a.excess_cents),
        format!("{} %", a.rate),
        euros(a.amo_cents),
        euros(a.pf_cents),
    ];
    Line {
        bold: false,
        cells: ACT_COLUMNS.iter().copied().zip(texts).collect(),
    }
}

/// The acts' table.
fn acts(s: &CareSheet, out: &mut Vec<Line>) {
    out.push(Line::blank());
    out.push(Line::heading(format!("Actes ({})", s.acts.len())));
    let titles = [
        "Date",
        "Code",
        "Coef.",
        "Qté",
        "Base",
        "Dépass.",
        "Taux",
        "Part AMO",
        "Particip.",
    ];
    out.push(Line {
        bold: true,
        cells: ACT_COLUMNS
            .iter()
            .copied()
            .zip(titles.iter().map(|t| t.to_string()))
            .collect(),
    });
    out.extend(s.acts.iter().map(act_row));
}

/// The amounts and who pays them.
fn amounts(s: &CareSheet, out: &mut Vec<Line>) {
    let a = &s.amounts;
    out.push(Line::blank());
    out.push(Line::heading("Montants"));
    for (label, cents) in [
        ("Total", a.total_cents),
        ("Base de remboursement", a.base_cents),
        ("Dépassements", a.excess_cents),
        ("Part AMO", a.amo_cents),
        ("Participation forfaitaire", a.pf_cents),
        ("Part AMC", a.amc_cents),
        ("Part patient", a.patient_cents),
        ("Reste dû par le patient", a.due_cents),
    ] {
        out.push(Line {
            bold: false,
            cells: vec![(LEFT, format!("{label} :")), (LEFT + 170.0, euros(cents))],
        });
    }
    let t = &s.tiers_payant;
    let amc = match &t.amc_number {
        Some(n) => format!("{} (AMC n° {n})", yes_no(t.amc)),
        None => yes_no(t.amc).to_string(),
    };
    field(
        out,
        "Tiers payant",
        &format!("AMO {}, AMC {amc}", yes_no(t.amo)),
    );
    field(out, "Tables de tarifs", &s.tables_version);
}

/// Every line of the duplicate's body, in order.
pub(super) fn lines(d: &Duplicate<'_>) -> Vec<Line> {
    let mut out = Vec::new();
    heading(d, &mut out);
    people(d.sheet, &mut out);
    acts(d.sheet, &mut out);
    amounts(d.sheet, &mut out);
    out
}

/// Lines of body a page holds.
fn per_page() -> usize {
    // (790 − 64) / 13 = 55.8: 56 baselines from the top one down to the bottom one.
    ((TOP - BOTTOM) / LEADING) as usize + 1
}

/// The object numbers of one page: the page, its content stream.
fn page_refs(i: usize) -> (Ref, Ref) {
    // 1 catalog, 2 page tree, 3 regular font, 4 bold font, 5 info; then two per page. A page
    // count that would overflow an i32 cannot be reached: a sheet's acts are bounded.
    let base = 6 + 2 * i32::try_from(i).unwrap_or(i32::MAX / 4);
    (Ref::new(base), Ref::new(base + 1))
}

/// The content stream of page `index` (from 0) of `count`.
fn page_content(d: &Duplicate<'_>, body: &[Line], index: usize, count: usize) -> Vec<u8> {
    let mut c = Content::new();
    let mut y = TOP;
    for line in body {
        for (x, text) in &line.cells {
            c.begin_text();
            c.set_font(Name(if line.bold { b"F2" } else { b"F1" }), SIZE);
            c.next_line(*x, y);
            c.show(Str(&win_ansi(text)));
            c.end_text();
        }
        y -= LEADING;
    }
    let footer = format!(
        "Feuille n° {} — {} — page {} / {}",
        d.sheet.number,
        d.lot_id.unwrap_or("hors lot"),
        index + 1,
        count
    );
    c.begin_text();
    c.set_font(Name(b"F1"), 8.0);
    c.next_line(LEFT, 40.0);
    c.show(Str(&win_ansi(&footer)));
    c.end_text();
    c.finish().to_vec()
}

/// The PDF of `d`: one A4 page, or more when the acts overflow it.
pub fn render(d: &Duplicate<'_>) -> Vec<u8> {
    let body = lines(d);
    let pages: Vec<&[Line]> = body.chunks(per_page()).collect();
    let count = pages.len();
    let mut pdf = Pdf::new();
    let (catalog, tree, regular, bold, info) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
    );
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids((0..count).map(|i| page_refs(i).0))
        .count(i32::try_from(count).unwrap_or(i32::MAX));
    for (name, r) in [(&b"Helvetica"[..], regular), (b"Helvetica-Bold", bold)] {
        pdf.type1_font(r)
            .base_font(Name(name))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    let title = format!("Feuille de soins n° {} — duplicata", d.sheet.number);
    pdf.document_info(info)
        .title(TextStr(&title))
        .producer(TextStr("fsed"));
    for (i, page_body) in pages.iter().enumerate() {
        let (page_ref, content_ref) = page_refs(i);
        let mut page = pdf.page(page_ref);
        page.media_box(Rect::new(0.0, 0.0, PAGE.0, PAGE.1));
        page.parent(tree);
        page.contents(content_ref);
        {
            let mut resources = page.resources();
            let mut fonts = resources.fonts();
            fonts.pair(Name(b"F1"), regular);
            fonts.pair(Name(b"F2"), bold);
        }
        page.finish();
        pdf.stream(content_ref, &page_content(d, page_body, i, count));
    }
    // Every object number above is used once (fixed ones, then two per page), the one case
    // in which `finish` would panic.
    pdf.finish()
}
