//! The TwiML documents the webhooks answer, built with `twiml-rust` (its `Dial::number` shortcut
//! writes the number unescaped, so numbers always go through the escaped `<Number>` noun).

use twiml_rust::voice::{
    Dial, DialAttributes, DialClient, DialConference, DialNumber, Record, Say,
};
use twiml_rust::{TwiML, VoiceResponse};

/// How long a voicemail may last, seconds (the seed's `maxLength="60"`).
pub const VOICEMAIL_MAX_SECONDS: u32 = 60;

/// How `<Say>` speaks: Twilio voice name and BCP 47 language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speech {
    pub voice: String,
    pub language: String,
}

impl Speech {
    fn say(&self, text: &str) -> Say {
        Say::new(xml_text(text))
            .voice(xml_text(&self.voice))
            .language(xml_text(&self.language))
    }
}

/// `text` without the characters XML 1.0 cannot carry even escaped (C0 controls other than tab
/// and line ends, U+FFFE, U+FFFF), and with its line ends as `\n`: `twiml-rust` escapes markup
/// but writes those as they are, which made the whole document ill-formed (Twilio then answers
/// the caller with an application error), and a bare `\r` is read differently by different XML
/// parsers. Found by the `twiml` fuzz target (a greeting `"\u{fffe}"` passes the settings'
/// check; `fuzz/regressions/twiml/`).
pub fn xml_text(text: &str) -> String {
    let kept: String = text
        .chars()
        .filter(|c| {
            matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        })
        .collect();
    kept.replace("\r\n", "\n").replace('\r', "\n")
}

/// The texts callers hear when a number has none of its own, by language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prompts {
    pub connecting: &'static str,
    pub voicemail: &'static str,
    pub not_in_service: &'static str,
    pub unavailable: &'static str,
}

const PROMPTS: &[(&str, Prompts)] = &[
    (
        "en",
        Prompts {
            connecting: "Please hold while we connect your call.",
            voicemail: "Nobody is available to take your call. Please leave a message after the beep.",
            not_in_service: "Sorry, the number you have called is not in service. Goodbye.",
            unavailable: "Sorry, we cannot connect your call right now. Please try again later. Goodbye.",
        },
    ),
    (
        "fr",
        Prompts {
            connecting: "Vous avez un appel entrant. Connexion en cours.",
            voicemail: "Veuillez laisser un message après le bip.",
            not_in_service: "Désolé, le numéro que vous avez composé n'est pas attribué. Au revoir.",
            unavailable: "Désolé, votre appel ne peut pas aboutir pour le moment. Veuillez réessayer plus tard. Au revoir.",
        },
    ),
    (
        "es",
        Prompts {
            connecting: "Un momento, por favor. Estamos conectando su llamada.",
            voicemail: "Por favor, deje su mensaje después de la señal.",
            not_in_service: "Lo sentimos, el número marcado no está en servicio. Adiós.",
            unavailable: "Lo sentimos, no podemos conectar su llamada en este momento. Adiós.",
        },
    ),
    (
        "de",
        Prompts {
            connecting: "Bitte warten Sie, Ihr Anruf wird verbunden.",
            voicemail: "Bitte hinterlassen Sie eine Nachricht nach dem Signalton.",
            not_in_service: "Die gewählte Rufnummer ist nicht vergeben. Auf Wiederhören.",
            unavailable: "Ihr Anruf kann im Moment nicht verbunden werden. Bitte versuchen Sie es später erneut.",
        },
    ),
    (
        "it",
        Prompts {
            connecting: "Attenda in linea, stiamo collegando la sua chiamata.",
            voicemail: "Lasci un messaggio dopo il segnale acustico.",
            not_in_service: "Il numero chiamato non è attivo. Arrivederci.",
            unavailable: "Non è possibile collegare la chiamata in questo momento. Arrivederci.",
        },
    ),
    (
        "pt",
        Prompts {
            connecting: "Aguarde, estamos a ligar a sua chamada.",
            voicemail: "Por favor, deixe a sua mensagem após o sinal.",
            not_in_service: "O número marcado não está atribuído. Adeus.",
            unavailable: "Não é possível ligar a sua chamada neste momento. Adeus.",
        },
    ),
    (
        "nl",
        Prompts {
            connecting: "Een moment geduld, uw gesprek wordt doorverbonden.",
            voicemail: "Laat een bericht achter na de pieptoon.",
            not_in_service: "Het gekozen nummer is niet in gebruik. Tot ziens.",
            unavailable: "Uw gesprek kan nu niet worden doorverbonden. Tot ziens.",
        },
    ),
];

/// The default prompts of `language` (`fr-FR` → French), English when there are none.
pub fn prompts(language: &str) -> Prompts {
    let primary = language
        .split('-')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    PROMPTS
        .iter()
        .find(|(code, _)| *code == primary)
        .or_else(|| PROMPTS.first())
        .map_or(
            Prompts {
                connecting: "",
                voicemail: "",
                not_in_service: "",
                unavailable: "",
            },
            |(_, prompts)| *prompts,
        )
}

/// Who an inbound call rings, with its `<Dial>` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// The owner's Voice SDK identity (`<Client>`).
    pub client: Option<String>,
    /// A number the call is forwarded to (`<Number>`).
    pub forward_to: Option<String>,
    pub timeout_seconds: u32,
    /// Absolute URL of `/webhook/voice/completed`.
    pub action: String,
}

/// `POST /webhook/voice` for a known number: the greeting, then every device of the owner rings
/// at once until `timeout`, then Twilio asks `action` what next.
pub fn inbound(speech: &Speech, greeting: &str, ring: &Ring) -> String {
    let mut dial = Dial::with_attributes(DialAttributes {
        action: Some(xml_text(&ring.action)),
        method: Some("POST".to_owned()),
        timeout: Some(ring.timeout_seconds),
        ..DialAttributes::default()
    });
    if let Some(identity) = &ring.client {
        dial = dial.add_client(DialClient::new(xml_text(identity)));
    }
    if let Some(number) = &ring.forward_to {
        dial = dial.add_number(DialNumber::new(xml_text(number)));
    }
    VoiceResponse::new()
        .say_with(speech.say(greeting))
        .dial_with(dial)
        .to_xml()
}

/// Voicemail: the greeting, then a recording of at most a minute posted to `action`, which
/// Twilio transcribes and posts to `transcription_callback`.
pub fn voicemail(
    speech: &Speech,
    greeting: &str,
    action: &str,
    transcription_callback: &str,
) -> String {
    VoiceResponse::new()
        .say_with(speech.say(greeting))
        .record_with(
            Record::new()
                .action(xml_text(action))
                .method("POST")
                .max_length(VOICEMAIL_MAX_SECONDS)
                .transcribe(true)
                .transcribe_callback(xml_text(transcription_callback)),
        )
        .to_xml()
}

/// A message, then hang up (unknown number, call we cannot place).
pub fn say_and_hang_up(speech: &Speech, text: &str) -> String {
    VoiceResponse::new()
        .say_with(speech.say(text))
        .hangup()
        .to_xml()
}

pub fn hang_up() -> String {
    VoiceResponse::new().hangup().to_xml()
}

/// An empty document: the answer to status callbacks, whose body Twilio ignores.
pub fn empty() -> String {
    VoiceResponse::new().to_xml()
}

/// The conference events Twilio reports to the conference's `statusCallback`.
pub const CONFERENCE_EVENTS: [&str; 5] = ["start", "end", "join", "leave", "mute"];

/// One leg joining its call's per-call `<Conference>` (a supervisor can then be added
/// as a participant). The leg that starts the conference (`starts`) brings it up as it enters;
/// the other waits in silence (`waitUrl=""`: no hold music, no beep) until it does. Either
/// leaving ends it, so nobody stays alone in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// `call_<call id>`: no personal data in Twilio's names.
    pub name: String,
    /// Our label of this leg (`rep`, `customer`).
    pub label: String,
    pub starts: bool,
    /// Absolute URL of `/webhook/voice/completed`: Twilio asks it what next when the leg leaves.
    pub action: String,
    /// Absolute URL of `/webhook/voice/conference?callId=…`.
    pub status_callback: String,
    /// Absolute URL of `/webhook/voice/recording?callId=…`, when the call is recorded.
    pub recording_callback: Option<String>,
}

/// `<Dial action><Conference …>call_…</Conference></Dial>`, after `greeting` when there is one.
pub fn bridge(greeting: Option<(&Speech, &str)>, leg: &Bridge) -> String {
    let mut conference = DialConference::new(xml_text(&leg.name))
        .beep("false")
        .start_conference_on_enter(leg.starts)
        .end_conference_on_exit(true)
        .wait_url("")
        .participant_label(xml_text(&leg.label))
        .status_callback(xml_text(&leg.status_callback))
        .status_callback_method("POST")
        .status_callback_event(CONFERENCE_EVENTS.iter().map(|e| (*e).to_owned()).collect());
    if let Some(callback) = &leg.recording_callback {
        conference = conference
            .record("record-from-start")
            .recording_status_callback(xml_text(callback))
            .recording_status_callback_method("POST");
    }
    let dial = Dial::with_attributes(DialAttributes {
        action: Some(xml_text(&leg.action)),
        method: Some("POST".to_owned()),
        ..DialAttributes::default()
    })
    .add_conference(conference);
    let mut response = VoiceResponse::new();
    if let Some((speech, text)) = greeting {
        response = response.say_with(speech.say(text));
    }
    response.dial_with(dial).to_xml()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech() -> Speech {
        Speech {
            voice: "alice".to_owned(),
            language: "fr-FR".to_owned(),
        }
    }

    #[test]
    fn inbound_rings_the_app_and_the_forward_number() {
        let xml = inbound(
            &speech(),
            prompts("fr-FR").connecting,
            &Ring {
                client: Some("u_abc".to_owned()),
                forward_to: Some("+33987654321".to_owned()),
                timeout_seconds: 30,
                action: "https://voice.example.test/webhook/voice/completed".to_owned(),
            },
        );
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{xml}"
        );
        assert!(xml.contains("<Say voice=\"alice\" language=\"fr-FR\">Vous avez un appel entrant. Connexion en cours.</Say>"), "{xml}");
        assert!(xml.contains("timeout=\"30\""), "{xml}");
        assert!(xml.contains("<Client>u_abc</Client>"), "{xml}");
        assert!(xml.contains("<Number>+33987654321</Number>"), "{xml}");
    }

    #[test]
    fn text_and_attributes_are_escaped() {
        let xml = say_and_hang_up(&speech(), "<Hangup/> & \"bye\"");
        assert!(xml.contains("&lt;Hangup/&gt; &amp;"), "{xml}");
        let xml = inbound(
            &speech(),
            "Hello",
            &Ring {
                client: None,
                forward_to: Some("+33987654321".to_owned()),
                timeout_seconds: 30,
                action: "https://x.test/webhook/voice/completed?a=1&b=2".to_owned(),
            },
        );
        assert!(xml.contains("?a=1&amp;b=2"), "{xml}");
    }

    #[test]
    fn characters_xml_cannot_carry_are_dropped_not_written() {
        // The `twiml` fuzz target's finding: these made the document ill-formed.
        let xml = say_and_hang_up(&speech(), "a\u{fffe}b\u{0}c\u{1b}d\u{ffff}e & <f>\te");
        assert!(roxmltree::Document::parse(&xml).is_ok(), "{xml}");
        assert!(xml.contains(">abcde &amp; &lt;f&gt;\te</Say>"), "{xml}");
        let xml = say_and_hang_up(&speech(), "one\r\0two\r\nthree\rfour");
        assert!(xml.contains(">one\ntwo\nthree\nfour</Say>"), "{xml}");
    }

    #[test]
    fn bridge_joins_the_calls_conference() {
        let xml = bridge(
            Some((&speech(), "Bonjour")),
            &Bridge {
                name: "call_0190".to_owned(),
                label: "customer".to_owned(),
                starts: false,
                action: "https://x.test/webhook/voice/completed".to_owned(),
                status_callback: "https://x.test/webhook/voice/conference?callId=1&a=2".to_owned(),
                recording_callback: None,
            },
        );
        assert!(roxmltree::Document::parse(&xml).is_ok(), "{xml}");
        assert!(xml.contains(">call_0190</Conference>"), "{xml}");
        assert!(xml.contains("startConferenceOnEnter=\"false\""), "{xml}");
        assert!(xml.contains("endConferenceOnExit=\"true\""), "{xml}");
        assert!(xml.contains("waitUrl=\"\""), "{xml}");
        assert!(xml.contains("callId=1&amp;a=2"), "{xml}");
        assert!(!xml.contains("record="), "{xml}");
    }

    #[test]
    fn prompts_follow_the_language_and_fall_back_to_english() {
        assert_eq!(
            prompts("fr-CA").voicemail,
            "Veuillez laisser un message après le bip."
        );
        assert_eq!(prompts("ja-JP"), prompts("en-US"));
    }
}
