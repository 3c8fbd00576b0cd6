//! The shipped region files load, and bad ones are refused with the file, field and problem named.

use contracts::region::RegionConfig;
use std::path::PathBuf;

fn regions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/regions")
}

#[test]
fn shipped_region_files_load() {
    let regions = RegionConfig::load_dir(&regions_dir()).expect("region files load");
    let ids: Vec<&str> = regions.iter().map(|r| r.cell_id.as_str()).collect();
    assert_eq!(ids, ["dk", "es", "mt", "se", "uk"]);
    let uk = regions.iter().find(|r| r.cell_id == "uk").unwrap();
    let caps: Vec<String> = uk.stake_limits.iter().map(|s| s.max_stake.to_string()).collect();
    assert_eq!(caps, ["5.00 GBP", "2.00 GBP"]);
    let se = regions.iter().find(|r| r.cell_id == "se").unwrap();
    assert_eq!(se.deposit_limits.as_ref().unwrap().increase_delay_hours, 72);
}

fn error_for(edit: impl Fn(String) -> String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("uk.toml");
    let text = std::fs::read_to_string(regions_dir().join("uk.toml")).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    let err = RegionConfig::from_file(&path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "names the file: {message}");
    message
}

#[test]
fn bad_region_files_are_refused_with_the_field_named() {
    let m = error_for(|t| t.replace("minimum_age = 18", "minimum_age = 18\ncolour = \"red\""));
    assert!(m.contains("unknown field `colour`"), "{m}");
    let m = error_for(|t| t.replace("licensed_countries = [\"GB\"]", "licensed_countries = [\"GB\", \"UK\"]"));
    assert!(m.contains("licensed_countries[1]") && m.contains("`UK` is not an ISO 3166-1"), "{m}");
    let m = error_for(|t| t.replace("currencies = [\"GBP\"]", "currencies = [\"GBX\"]"));
    assert!(m.contains("currencies[0]") && m.contains("unknown currency `GBX`"), "{m}");
    let m = error_for(|t| t.replace("register = \"GAMSTOP\"", "register = \"ROFUS\""));
    assert!(m.contains("missing rule") && m.contains("GAMSTOP"), "{m}");
    let m = error_for(|t| {
        t.split("[[rules.stake_limits]]").next().unwrap().to_string()
            + "[rules.deposit_limits]\nmandatory = false\nperiods = []\nincrease_delay_hours = 0\nsource = \"x\"\n"
    });
    assert!(m.contains("missing rule") && m.contains("stake limits"), "{m}");
    let m = error_for(|t| t.replace("max_stake = \"5.00\"", "max_stake = \"5.001\""));
    assert!(m.contains("rules.stake_limits[0].max_stake"), "{m}");
    // A product typo used to match no game and drop the UK slot stake cap silently.
    let m = error_for(|t| t.replacen("product = \"slots\"", "product = \"slot\"", 1));
    assert!(m.contains("product") && m.contains("unknown variant `slot`") && m.contains("`slots`, `live`"), "{m}");
    let m = error_for(|t| t.replace("export_format = \"ukgc-regulatory-return\"\n", ""));
    assert!(m.contains("missing field `export_format`"), "{m}");
}
