//! Documents that must not drift from the code.

fn read(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn architecture_md_carries_the_register_maps_of_the_code() {
    let doc = read("ARCHITECTURE.md");
    assert!(doc.contains(&endotower_actors::registers::markdown()), "ARCHITECTURE.md register maps differ from `endotower registers`");
}

/// Every `.rs` file under `dir`, recursively.
fn rust_sources(dir: &std::path::Path, out: &mut String) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
}

#[test]
fn every_hazard_id_in_a_test_name_is_in_the_hazard_table() {
    let table = read("HAZARDS.md");
    let mut sources = String::new();
    for dir in ["tests", "actors/src", "sim/src", "src"] {
        rust_sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut sources);
    }
    let mut found = 0;
    for prefix in ["fn hz", "mod hz"] {
        for (i, _) in sources.match_indices(prefix) {
            let at = i + prefix.len();
            let id = &sources[at..at + 3];
            if !id.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            assert!(table.contains(&format!("HZ-{id}")), "test hz{id} has no HZ-{id} row in HAZARDS.md");
            found += 1;
        }
    }
    assert!(found >= 10, "only {found} hazard tests found");
}
