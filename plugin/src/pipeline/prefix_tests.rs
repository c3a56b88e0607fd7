//! Decision 5 as properties: a tool output's bytes depend only on the conversation prefix that
//! carries it. Compressing a conversation turn by turn with one set of stores (a long-lived
//! process) sends exactly what compressing each turn from scratch with empty stores (a fresh
//! process, a restart, another replica) sends, and every turn keeps the previous turn's bytes
//! as its prefix, in the three APIs, while the user asks something new between tool loops.

#![allow(clippy::indexing_slicing, clippy::panic)]

use proptest::prelude::*;

use super::tests::corpus_texts;
use super::*;
use crate::api::Api;
use crate::json::encode_string;

/// One conversation being built turn by turn in one API's shape.
struct Conversation {
    api: Api,
    items: Vec<String>,
}

impl Conversation {
    fn new(api: Api, first_question: &str) -> Self {
        let first = match api {
            Api::OpenAiResponses => format!(
                r#"{{"role":"user","content":[{{"type":"input_text","text":{}}}]}}"#,
                encode_string(first_question)
            ),
            _ => format!(
                r#"{{"role":"user","content":{}}}"#,
                encode_string(first_question)
            ),
        };
        Conversation {
            api,
            items: vec![first],
        }
    }

    /// Appends the model's tool call, its output and, when given, a new user question (in
    /// Anthropic in the same user message as the tool result, as Claude Code sends it, with
    /// the cache breakpoint moved onto the newest tool result).
    fn turn(&mut self, turn: usize, output: &str, question: Option<&str>) -> Vec<u8> {
        let output = encode_string(output);
        match self.api {
            Api::AnthropicMessages => {
                // Claude Code keeps one moving breakpoint on the newest tool result.
                for item in &mut self.items {
                    *item = item.replace(r#","cache_control":{"type":"ephemeral"}"#, "");
                }
                self.items.push(format!(
                    r#"{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_{turn}","name":"Bash","input":{{}}}}]}}"#
                ));
                let text = question
                    .map(|q| format!(r#",{{"type":"text","text":{}}}"#, encode_string(q)))
                    .unwrap_or_default();
                self.items.push(format!(
                    r#"{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_{turn}","content":{output},"cache_control":{{"type":"ephemeral"}}}}{text}]}}"#
                ));
            }
            Api::OpenAiChat => {
                self.items.push(format!(
                    r#"{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_{turn}","type":"function","function":{{"name":"bash","arguments":"{{}}"}}}}]}}"#
                ));
                self.items.push(format!(
                    r#"{{"role":"tool","tool_call_id":"call_{turn}","content":{output}}}"#
                ));
                if let Some(q) = question {
                    self.items.push(format!(
                        r#"{{"role":"user","content":{}}}"#,
                        encode_string(q)
                    ));
                }
            }
            Api::OpenAiResponses => {
                self.items.push(format!(
                    r#"{{"type":"function_call","call_id":"call_{turn}","name":"bash","arguments":"{{}}"}}"#
                ));
                self.items.push(format!(
                    r#"{{"type":"function_call_output","call_id":"call_{turn}","output":{output}}}"#
                ));
                if let Some(q) = question {
                    self.items.push(format!(
                        r#"{{"role":"user","content":[{{"type":"input_text","text":{}}}]}}"#,
                        encode_string(q)
                    ));
                }
            }
        }
        self.body()
    }

    fn body(&self) -> Vec<u8> {
        let items = self.items.join(",");
        match self.api {
            Api::AnthropicMessages => format!(
                r#"{{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"Be brief.","messages":[{items}]}}"#
            ),
            Api::OpenAiChat => format!(r#"{{"model":"gpt-4o","messages":[{items}]}}"#),
            Api::OpenAiResponses => format!(r#"{{"model":"gpt-4o","input":[{items}]}}"#),
        }
        .into_bytes()
    }
}

/// What `host` sends upstream for `body`.
fn sent(api: Api, body: &[u8], config: &PipelineConfig, host: &mut MemoryHost) -> Vec<u8> {
    match compress_request(api, body, config, host) {
        Ok(outcome) => outcome.body.unwrap_or_else(|| body.to_vec()),
        Err(e) => panic!("{api:?}: {e:?}"),
    }
}

/// The bytes of the conversation's items in `body` (without the closing brackets).
fn open_prefix(body: &[u8]) -> &[u8] {
    body.strip_suffix(b"]}").unwrap_or(body)
}

/// `body` without Anthropic cache breakpoints: the client moves them itself, and the provider's
/// cached prefix is the content around them.
fn without_breakpoints(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replace(r#","cache_control":{"type":"ephemeral"}"#, "")
        .into_bytes()
}

/// Runs `turns` (output index, new question) through one long-lived process, through a process
/// that only sees every other turn, and through a fresh process per turn; asserts they all send
/// the same bytes and that every turn extends the previous one.
fn check_conversation(api: Api, turns: &[(usize, Option<String>)], outputs: &[String]) -> usize {
    check_conversation_with(api, turns, outputs, &PipelineConfig::default())
}

/// [`check_conversation`] with `config` in every process.
fn check_conversation_with(
    api: Api,
    turns: &[(usize, Option<String>)],
    outputs: &[String],
    config: &PipelineConfig,
) -> usize {
    let config = config.clone();
    let mut long_lived = MemoryHost::default();
    let mut every_other = MemoryHost::default();
    let mut conversation = Conversation::new(api, "Investigate the incident in checkout.");
    let mut previous: Option<Vec<u8>> = None;
    let mut recompressed = 0;
    for (turn, (output, question)) in turns.iter().enumerate() {
        let output = &outputs[output % outputs.len()];
        let body = conversation.turn(turn, output, question.as_deref());
        let from_long = sent(api, &body, &config, &mut long_lived);
        let fresh = compress_request(api, &body, &config, &mut MemoryHost::default());
        let fresh = fresh.unwrap_or_else(|e| panic!("{e:?}"));
        recompressed += fresh.recompressed_history;
        let from_fresh = fresh.body.unwrap_or_else(|| body.clone());
        assert!(
            from_long == from_fresh,
            "{api:?} turn {turn}: a fresh process sent other bytes"
        );
        if turn % 2 == 1 {
            let from_other = sent(api, &body, &config, &mut every_other);
            assert!(
                from_other == from_long,
                "{api:?} turn {turn}: a process that saw every other turn sent other bytes"
            );
        }
        let from_long = without_breakpoints(&from_long);
        if let Some(previous) = &previous {
            assert!(
                from_long.starts_with(open_prefix(previous)),
                "{api:?} turn {turn}: the previous turn's bytes are not this turn's prefix"
            );
        }
        previous = Some(from_long);
    }
    recompressed
}

const APIS: [Api; 3] = [
    Api::AnthropicMessages,
    Api::OpenAiChat,
    Api::OpenAiResponses,
];

/// The issue's session: twelve turns, a new user question every third turn (which used to
/// change how every earlier output was compressed afresh).
#[test]
fn twelve_turns_with_new_questions_are_the_same_bytes_in_every_process() {
    let outputs = corpus_texts();
    let turns: Vec<(usize, Option<String>)> = (0..12)
        .map(|turn| {
            let question = (turn % 3 == 2).then(|| {
                format!(
                    "What about ord_{:05}, module_{:02} and the {} errors?",
                    10_000 + turn * 17,
                    turn,
                    ["timeout", "auth", "db"][turn % 3]
                )
            });
            (turn, question)
        })
        .collect();
    for api in APIS {
        let recompressed = check_conversation(api, &turns, &outputs);
        // The fresh processes did compress earlier outputs again: the equality is the
        // pipeline's, not the replay cache's.
        assert!(
            recompressed > 0,
            "{api:?}: no earlier output was compressed again"
        );
    }
}

/// An earlier output's relevance query is the user text up to its message: a later question
/// that names other rows does not change it.
#[test]
fn a_later_question_does_not_change_an_earlier_output() {
    let outputs = corpus_texts();
    let config = PipelineConfig::default();
    for api in APIS {
        let mut a = Conversation::new(api, "Which orders failed?");
        let mut b = Conversation::new(api, "Which orders failed?");
        a.turn(0, &outputs[0], None);
        b.turn(0, &outputs[0], None);
        let body_a = a.turn(1, &outputs[1], Some("Tell me about ord_10017 only."));
        let body_b = b.turn(1, &outputs[1], Some("Now the payment module logs."));
        let sent_a = sent(api, &body_a, &config, &mut MemoryHost::default());
        let sent_b = sent(api, &body_b, &config, &mut MemoryHost::default());
        let (sent_a, sent_b) = (without_breakpoints(&sent_a), without_breakpoints(&sent_b));
        let common = sent_a
            .iter()
            .zip(&sent_b)
            .take_while(|(x, y)| x == y)
            .count();
        let mut only_first = Conversation::new(api, "Which orders failed?");
        let first = only_first.turn(0, &outputs[0], None);
        let first_sent = sent(api, &first, &config, &mut MemoryHost::default());
        let first_sent = without_breakpoints(&first_sent);
        assert!(
            common >= open_prefix(&first_sent).len(),
            "{api:?}: the first output differs with a later question"
        );
    }
}

fn arb_turns() -> impl Strategy<Value = Vec<(usize, Option<String>)>> {
    proptest::collection::vec(
        (
            0usize..8,
            proptest::option::of("[a-z_0-9 ]{0,30}( ord_1[0-9]{4})?"),
        ),
        1..7,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Turn by turn with stores equals each prefix from scratch with empty stores.
    #[test]
    fn turn_by_turn_equals_each_prefix_from_scratch(turns in arb_turns(), api in 0usize..3) {
        let mut outputs = corpus_texts();
        outputs.push("short output".to_owned());
        outputs.push("x".repeat(3000));
        outputs.push(outputs[0].replace("ord_", "order-"));
        check_conversation(APIS[api], &turns, &outputs);
    }
}

/// The marker of the log output in a one-turn Anthropic request, as `config` compresses it,
/// with the host that did.
fn log_marker(config: &PipelineConfig) -> (marker::Marker, MemoryHost, String) {
    let log = corpus_texts()[1].clone();
    let mut conversation = Conversation::new(Api::AnthropicMessages, "Why did checkout fail?");
    let body = conversation.turn(0, &log, None);
    let mut host = MemoryHost::default();
    let sent = sent(Api::AnthropicMessages, &body, config, &mut host);
    let sent = String::from_utf8(sent).unwrap_or_default();
    let found = marker::Marker::find(&sent);
    let Some(found) = found else {
        panic!("no marker in {sent}")
    };
    (found, host, log)
}

/// Without a marker secret a marker names the content hash (what every earlier version sent);
/// with one it names a keyed hash that cannot be computed from guessed content, the original
/// is kept under that name, and every process with the same secret sends the same bytes.
#[test]
fn keyed_markers_hide_the_content_hash_and_stay_the_same_across_a_fleet() {
    let (plain, host, log) = log_marker(&PipelineConfig::default());
    assert_eq!(plain.hash, ContentHash::of(log.as_bytes()));
    assert_eq!(
        OmittedStore::get(&host.omitted, plain.hash).as_deref(),
        Some(log.as_bytes())
    );

    let keyed_config = PipelineConfig {
        marker_key: MarkerKey::new(b"fleet secret"),
        ..PipelineConfig::default()
    };
    let (keyed, host, _) = log_marker(&keyed_config);
    assert_ne!(keyed.hash, plain.hash);
    assert_eq!(
        keyed.hash,
        keyed_config
            .marker_key
            .marker_hash(&ContentHash::digest(log.as_bytes()))
    );
    assert_eq!(
        OmittedStore::get(&host.omitted, keyed.hash).as_deref(),
        Some(log.as_bytes())
    );
    assert_eq!(OmittedStore::get(&host.omitted, plain.hash), None);
    let other_secret = PipelineConfig {
        marker_key: MarkerKey::new(b"another secret"),
        ..PipelineConfig::default()
    };
    assert_ne!(log_marker(&other_secret).0.hash, keyed.hash);
    // A new secret is a new configuration: decisions made under the old one are not replayed.
    assert_ne!(
        keyed_config.fingerprint(),
        PipelineConfig::default().fingerprint()
    );

    let outputs = corpus_texts();
    let turns: Vec<(usize, Option<String>)> = (0..6)
        .map(|turn| (turn, (turn == 3).then(|| "And the auth errors?".to_owned())))
        .collect();
    for api in APIS {
        check_conversation_with(api, &turns, &outputs, &keyed_config);
    }
}

/// A process that replays another's decision (the replay map knew the output, its own
/// omitted store did not) keeps the original too, so the marker it sends resolves there.
#[test]
fn a_replayed_marker_resolves_in_the_process_that_replayed_it() {
    let config = PipelineConfig::default();
    let (found, first, log) = log_marker(&config);
    let mut second = MemoryHost {
        omitted: store::MemoryStore::new(64 << 20),
        replay: first.replay.clone(),
    };
    let mut conversation = Conversation::new(Api::AnthropicMessages, "Why did checkout fail?");
    let body = conversation.turn(0, &log, None);
    let outcome = compress_request(Api::AnthropicMessages, &body, &config, &mut second);
    let outcome = outcome.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        outcome
            .blocks
            .iter()
            .any(|block| block.decision == Decision::Replayed),
        "the second process did not replay"
    );
    assert_eq!(
        OmittedStore::get(&second.omitted, found.hash).as_deref(),
        Some(log.as_bytes())
    );
}
