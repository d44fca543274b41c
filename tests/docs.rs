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
    for dir in ["tests", "actors/src", "safety/src", "sim/src", "src"] {
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

/// docs/fault-matrix.md and conf/scenarios/ agree: every scenario file is a
/// row (once), every row names a file, and both list the same hazard ids,
/// each of which is in the hazard table.
#[cfg(feature = "fault-injection")]
#[test]
fn the_fault_matrix_lists_every_scenario_with_its_hazards() {
    let doc = read("docs/fault-matrix.md");
    let hazards = read("HAZARDS.md");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/scenarios");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    files.sort();
    // The "Rows" section only (the results table below it names scenarios too).
    let section = doc.split("## Rows").nth(1).and_then(|r| r.split("\n## ").next()).expect("a ## Rows section");
    let rows: Vec<(String, Vec<String>)> = section
        .lines()
        .filter(|l| l.starts_with("| ") && l.matches('`').count() == 2)
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(3)?.trim_matches('`').to_string();
            let hz = cells.get(4)?.split(',').map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect();
            Some((name, hz))
        })
        .collect();
    let mut listed: Vec<String> = rows.iter().map(|(n, _)| n.clone()).collect();
    listed.sort();
    assert_eq!(listed, files, "fault-matrix rows and conf/scenarios/*.toml differ");
    for (name, hz) in rows {
        let s = endotower::scenario::file::Scenario::load(&dir.join(format!("{name}.toml"))).unwrap();
        let mut a = hz.clone();
        let mut b = s.hazards.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: hazards in docs/fault-matrix.md and in the scenario file differ");
        for h in &hz {
            assert!(hazards.contains(&format!("| {h} |")), "{name}: {h} is not in HAZARDS.md");
        }
    }
}

#[test]
fn device_interface_md_carries_the_requests_and_register_maps_of_the_code() {
    let doc = read("docs/device-interface.md");
    assert!(
        doc.contains(&endotower_actors::device_interface::requests_markdown()),
        "docs/device-interface.md request tables differ from `endotower registers --requests`"
    );
    assert!(
        doc.contains(&endotower_actors::registers::markdown()),
        "docs/device-interface.md register maps differ from `endotower registers`"
    );
}

#[test]
fn the_readme_names_every_config_list_the_environment_can_set() {
    let doc = read("README.md");
    for (key, _) in endotower::tower_config::ENV_LIST_KEYS {
        assert!(doc.contains(&format!("`{key}`")), "README.md does not list the environment list key {key}");
    }
}

#[test]
fn mqtt_md_lists_every_field_of_every_device_state() {
    let doc = read("docs/mqtt.md");
    for (file, schema) in endotower_actors::telemetry::payloads::schemas() {
        let Some(device) = file.strip_prefix("state-").and_then(|f| f.strip_suffix(".json")) else { continue };
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `state/{device}` |")))
            .unwrap_or_else(|| panic!("docs/mqtt.md has no state row for {device}"));
        // Properties of the object, or of each variant of a tagged enum.
        let mut props: Vec<String> = Vec::new();
        let mut collect = |o: &serde_json::Value| {
            if let Some(p) = o.get("properties").and_then(|p| p.as_object()) {
                props.extend(p.keys().cloned());
            }
        };
        collect(&schema);
        for v in schema.get("oneOf").and_then(|v| v.as_array()).into_iter().flatten() {
            collect(v);
        }
        assert!(!props.is_empty(), "{file} has no properties");
        for p in props {
            assert!(row.contains(&format!("`{p}`")), "docs/mqtt.md's {device} row does not list `{p}`");
        }
    }
}
