//! Documents that must not drift from the code.

fn read(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn architecture_md_carries_the_register_maps_of_the_code() {
    let doc = read("ARCHITECTURE.md");
    assert!(doc.contains(&endotower_actors::registers::markdown()), "ARCHITECTURE.md register maps differ from `endotower registers`");
}

#[test]
fn every_hazard_id_in_a_test_name_is_in_the_hazard_table() {
    let table = read("HAZARDS.md");
    let mut sources = String::new();
    for dir in ["tests", "actors/src", "sim/src"] {
        for e in std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                sources.push_str(&std::fs::read_to_string(p).unwrap());
            }
        }
    }
    let mut found = 0;
    for (i, _) in sources.match_indices("fn hz") {
        let id = &sources[i + 5..i + 8];
        if !id.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        assert!(table.contains(&format!("HZ-{id}")), "test hz{id} has no HZ-{id} row in HAZARDS.md");
        found += 1;
    }
    assert!(found >= 10, "only {found} hazard tests found");
}
