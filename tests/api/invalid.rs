//! Bad input is rejected with a message that names the field. Each file in
//! `tests/fixtures/invalid/` holds one mistake and the message(s) it must produce
//! (`# expect:` lines); a file with two documents is an update of the first by the second.

use crate::support;
use lifeline::admission;
use lifeline::cli::manifests::{expand, read_documents};

struct Case {
    file: String,
    expects: Vec<String>,
    docs: Vec<serde_json::Value>,
}

fn cases() -> Vec<Case> {
    expand(&[support::path("tests/fixtures/invalid")])
        .unwrap()
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let expects: Vec<String> =
                text.lines().filter_map(|l| l.strip_prefix("# expect: ")).map(str::to_string).collect();
            let docs = read_documents(&path).unwrap().into_iter().map(|d| d.value).collect();
            Case { file: path.file_name().unwrap().to_string_lossy().into_owned(), expects, docs }
        })
        .collect()
}

#[test]
fn there_are_enough_bad_inputs() {
    assert!(cases().len() >= 15, "the issue asks for at least 15 bad inputs");
}

#[test]
fn every_bad_input_is_rejected_with_a_message_naming_the_field() {
    let mut failures = Vec::new();
    for case in cases() {
        assert!(!case.expects.is_empty(), "{}: no `# expect:` line", case.file);
        let (old, new) = match case.docs.as_slice() {
            [new] => (None, new),
            [old, new] => {
                admission::admit(old, None)
                    .unwrap_or_else(|e| panic!("{}: the stored object is itself invalid: {e}", case.file));
                (Some(old), new)
            }
            other => panic!("{}: expected one or two documents, got {}", case.file, other.len()),
        };
        match admission::admit(new, old) {
            Ok(_) => failures.push(format!("{}: accepted", case.file)),
            Err(e) => {
                let message = e.to_string();
                for want in &case.expects {
                    if !message.contains(want.as_str()) {
                        failures.push(format!("{}:\n  expected: {want}\n  got:      {message}", case.file));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The update cases are only meaningful if the same object is accepted as a create.
#[test]
fn immutability_is_about_the_change_not_the_value() {
    for case in cases().into_iter().filter(|c| c.docs.len() == 2) {
        let new = &case.docs[1];
        admission::admit(new, None)
            .unwrap_or_else(|e| panic!("{}: the new object is invalid even as a create: {e}", case.file));
        admission::admit(new, Some(new))
            .unwrap_or_else(|e| panic!("{}: an unchanged update is rejected: {e}", case.file));
    }
}
