//! The registry of codes (`src/codes.rs`) against what clients read: the README's tables and
//! the `code` enum of `GET /openapi.json`.

use crate::helpers::*;
use satchel::codes::{api, media, ready, ApiCode};
use std::collections::BTreeMap;

/// The rows of the README table that follows `<!-- codes: NAME -->`: first column (the code,
/// without backticks) to second (a status, or a meaning).
fn readme_table(name: &str) -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let marker = format!("<!-- codes: {name} -->");
    let (_, after) = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"));
    let mut rows = BTreeMap::new();
    for line in after
        .trim_start()
        .lines()
        .take_while(|l| l.starts_with('|'))
        .skip(2)
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let code = cells[1].trim_matches('`').to_owned();
        let earlier = rows.insert(code.clone(), cells[2].to_owned());
        assert!(
            earlier.is_none(),
            "{code} twice in the README's {name} table"
        );
    }
    assert!(!rows.is_empty(), "the README's {name} table is empty");
    rows
}

fn statuses(codes: &[ApiCode]) -> BTreeMap<String, String> {
    codes
        .iter()
        .map(|c| (c.code.to_owned(), c.status.as_u16().to_string()))
        .collect()
}

#[test]
fn the_readme_documents_every_api_code_with_its_status_and_no_other() {
    assert_eq!(readme_table("api"), statuses(api::ALL));
}

#[test]
fn the_readme_documents_every_readiness_code_and_no_other() {
    assert_eq!(readme_table("ready"), statuses(ready::ALL));
}

#[test]
fn the_readme_documents_every_media_failure_code_and_no_other() {
    let documented: Vec<String> = readme_table("media").into_keys().collect();
    let mut registered: Vec<String> = media::all().map(|c| c.code.to_owned()).collect();
    registered.sort();
    assert_eq!(documented, registered);
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_registered_error_codes() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let code = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"];
    let mut listed: Vec<&str> = code["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("ErrorDetail.code has no enum: {code}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    listed.sort();
    let mut registered: Vec<&str> = api::ALL.iter().chain(ready::ALL).map(|c| c.code).collect();
    registered.sort();
    registered.dedup();
    assert_eq!(listed, registered);
}
