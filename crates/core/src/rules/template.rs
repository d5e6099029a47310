//! Notes templates: the free text a rule writes next to its code, with `{{placeholder}}`s filled from the leg.
//!
//! A template is parsed once, when the rule is loaded, into literal text and typed fields, so a misspelt placeholder
//! is a load-time error rather than a silently empty note in production. Rendering is total: a fact the leg does not
//! carry renders as the empty string, and the result is capped at [`NOTES_MAX_CHARS`] characters because platform
//! notes are free text of bounded size and attribute values come from outside.
//!
//! Syntax: `{{name}}` (spaces inside the braces are allowed). A `{{` without a closing `}}` is an error; a lone `}}`
//! is literal text. There is no escaping and no logic — rules choose, templates only describe.

use crate::leg::LegFacts;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Rendered notes are cut to this many characters.
pub const NOTES_MAX_CHARS: usize = 1_000;

/// The placeholders a template may use, besides `attributes.<name>`.
pub const PLACEHOLDERS: &[&str] = &[
    "channel",
    "direction",
    "queue",
    "disconnect_type",
    "talk_seconds",
    "hold_seconds",
    "user_id",
    "campaign",
    "rule",
    "code",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Channel,
    Direction,
    Queue,
    DisconnectType,
    TalkSeconds,
    HoldSeconds,
    UserId,
    Campaign,
    Rule,
    Code,
    Attribute(String),
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "channel" => Field::Channel,
            "direction" => Field::Direction,
            "queue" => Field::Queue,
            "disconnect_type" => Field::DisconnectType,
            "talk_seconds" => Field::TalkSeconds,
            "hold_seconds" => Field::HoldSeconds,
            "user_id" => Field::UserId,
            "campaign" => Field::Campaign,
            "rule" => Field::Rule,
            "code" => Field::Code,
            _ => match name.strip_prefix("attributes.") {
                Some(attr) if !attr.is_empty() => Field::Attribute(attr.to_string()),
                _ => return None,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// Why a template was refused. Offsets are byte offsets into the template text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown placeholder {{{{{name}}}}}; known: {}, attributes.<name>",
        PLACEHOLDERS.join(", ")
    )]
    UnknownPlaceholder { name: String, offset: usize },
    #[error("`{{{{` at byte {offset} is not closed by `}}}}`")]
    Unclosed { offset: usize },
}

/// A parsed notes template. Serialized as its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotesTemplate {
    source: String,
    parts: Vec<Part>,
}

/// What a template is rendered for, besides the leg's facts.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    pub rule: &'a str,
    pub code: &'a str,
    pub facts: &'a LegFacts,
}

impl NotesTemplate {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let inner_start = open + 2;
            let close = rest[inner_start..].find("}}").ok_or(TemplateError::Unclosed { offset: offset + open })?;
            let name = rest[inner_start..inner_start + close].trim();
            let field = Field::parse(name)
                .ok_or_else(|| TemplateError::UnknownPlaceholder { name: name.to_string(), offset: offset + open })?;
            parts.push(Part::Field(field));
            let consumed = inner_start + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { source: source.to_string(), parts })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The notes for one leg, at most [`NOTES_MAX_CHARS`] characters.
    pub fn render(&self, cx: RenderContext<'_>) -> String {
        let facts = cx.facts;
        let mut out = String::new();
        for part in &self.parts {
            let piece: std::borrow::Cow<'_, str> = match part {
                Part::Text(t) => t.as_str().into(),
                Part::Field(f) => match f {
                    Field::Channel => facts.channel.map(|c| c.as_str()).unwrap_or_default().into(),
                    Field::Direction => facts.direction.as_str().into(),
                    Field::Queue => facts.queue_name.as_deref().unwrap_or_default().into(),
                    Field::DisconnectType => facts.disconnect_type.as_deref().unwrap_or_default().into(),
                    Field::TalkSeconds => seconds(facts.talk_ms).into(),
                    Field::HoldSeconds => seconds(facts.hold_ms).into(),
                    Field::UserId => facts.user_id.as_deref().unwrap_or_default().into(),
                    Field::Campaign => facts.campaign_id.as_deref().unwrap_or_default().into(),
                    Field::Rule => cx.rule.into(),
                    Field::Code => cx.code.into(),
                    Field::Attribute(name) => facts.attributes.get(name).map(String::as_str).unwrap_or_default().into(),
                },
            };
            out.push_str(&piece);
            // Stop early: attribute values are untrusted and may be huge.
            if out.len() > NOTES_MAX_CHARS * 4 {
                break;
            }
        }
        truncate_chars(out, NOTES_MAX_CHARS)
    }
}

/// Whole seconds, rounded to the nearest second; empty when unknown.
fn seconds(ms: Option<u64>) -> String {
    ms.map(|ms| (ms / 1000 + u64::from(ms % 1000 >= 500)).to_string()).unwrap_or_default()
}

fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((cut, _)) = s.char_indices().nth(max) {
        s.truncate(cut);
    }
    s
}

impl Serialize for NotesTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for NotesTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NotesTemplate::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leg::{Channel, Direction};

    fn facts() -> LegFacts {
        LegFacts {
            channel: Some(Channel::Voice),
            direction: Direction::Inbound,
            queue_name: Some("Support".into()),
            talk_ms: Some(4_500),
            attributes: [("tier".to_string(), "gold".to_string())].into(),
            ..LegFacts::default()
        }
    }

    fn render(t: &str, facts: &LegFacts) -> String {
        NotesTemplate::parse(t).unwrap().render(RenderContext { rule: "short", code: "Abandoned", facts })
    }

    #[test]
    fn placeholders_render_from_the_leg() {
        assert_eq!(
            render("auto: {{channel}} {{ direction }} {{queue}} {{talk_seconds}}s tier={{attributes.tier}} by {{rule}}/{{code}}", &facts()),
            "auto: voice inbound Support 5s tier=gold by short/Abandoned"
        );
    }

    #[test]
    fn missing_facts_render_empty() {
        assert_eq!(render("[{{hold_seconds}}][{{user_id}}][{{attributes.nope}}][{{campaign}}]", &facts()), "[][][][]");
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_refused_with_their_offset() {
        assert_eq!(
            NotesTemplate::parse("ok {{chanel}}"),
            Err(TemplateError::UnknownPlaceholder { name: "chanel".into(), offset: 3 })
        );
        assert!(NotesTemplate::parse("{{attributes.}}").is_err());
        assert_eq!(NotesTemplate::parse("a {{channel}} {{queue"), Err(TemplateError::Unclosed { offset: 14 }));
        assert!(NotesTemplate::parse("a }} b").is_ok());
    }

    #[test]
    fn rendered_notes_are_capped() {
        let mut f = facts();
        f.attributes.insert("big".into(), "é".repeat(5_000));
        let out = render("{{attributes.big}}{{attributes.big}}", &f);
        assert_eq!(out.chars().count(), NOTES_MAX_CHARS);
    }

    #[test]
    fn the_unknown_placeholder_message_names_the_placeholder() {
        let e = NotesTemplate::parse("{{x}}").unwrap_err().to_string();
        assert!(e.starts_with("unknown placeholder {{x}}; known: channel,"), "{e}");
    }
}
