//! The SAFE standard-record XSDs (Denmark), compiled into `export-verify`: `(path, text)` under
//! `cell/regulators/dk/` (generated from that directory; `every_dk_schema_is_listed` checks it).

pub const DK_SCHEMAS: &[(&str, &str)] = &[
    ("types/AdresseLandKodeType.xsd", include_str!("../../regulators/dk/types/AdresseLandKodeType.xsd")),
    ("types/AntalType.xsd", include_str!("../../regulators/dk/types/AntalType.xsd")),
    (
        "types/BeloebPositiv18UdenDecimalerType.xsd",
        include_str!("../../regulators/dk/types/BeloebPositiv18UdenDecimalerType.xsd"),
    ),
    (
        "types/BeloebPositivNegativ10Decimaler10Type.xsd",
        include_str!("../../regulators/dk/types/BeloebPositivNegativ10Decimaler10Type.xsd"),
    ),
    ("types/BeloebType.xsd", include_str!("../../regulators/dk/types/BeloebType.xsd")),
    ("types/DanTotoHostType.xsd", include_str!("../../regulators/dk/types/DanTotoHostType.xsd")),
    ("types/DantotoKuponTypeType.xsd", include_str!("../../regulators/dk/types/DantotoKuponTypeType.xsd")),
    ("types/DantotoLoebTypeType.xsd", include_str!("../../regulators/dk/types/DantotoLoebTypeType.xsd")),
    ("types/DatoTidType.xsd", include_str!("../../regulators/dk/types/DatoTidType.xsd")),
    ("types/DatoType.xsd", include_str!("../../regulators/dk/types/DatoType.xsd")),
    ("types/HestDKKategoriNavnType.xsd", include_str!("../../regulators/dk/types/HestDKKategoriNavnType.xsd")),
    ("types/HesteagtigKategoriNavnType.xsd", include_str!("../../regulators/dk/types/HesteagtigKategoriNavnType.xsd")),
    ("types/HostType.xsd", include_str!("../../regulators/dk/types/HostType.xsd")),
    ("types/KasinoIdentifikationType.xsd", include_str!("../../regulators/dk/types/KasinoIdentifikationType.xsd")),
    ("types/KasinoSpilKategoriType.xsd", include_str!("../../regulators/dk/types/KasinoSpilKategoriType.xsd")),
    ("types/KodeType.xsd", include_str!("../../regulators/dk/types/KodeType.xsd")),
    ("types/KunToppuljeType.xsd", include_str!("../../regulators/dk/types/KunToppuljeType.xsd")),
    ("types/LandeKodeType.xsd", include_str!("../../regulators/dk/types/LandeKodeType.xsd")),
    ("types/LandeNummerKodeType.xsd", include_str!("../../regulators/dk/types/LandeNummerKodeType.xsd")),
    ("types/ManagerspilKoebTypeType.xsd", include_str!("../../regulators/dk/types/ManagerspilKoebTypeType.xsd")),
    ("types/MarkeringType.xsd", include_str!("../../regulators/dk/types/MarkeringType.xsd")),
    (
        "types/MonopolDantotoKategoriNavnType.xsd",
        include_str!("../../regulators/dk/types/MonopolDantotoKategoriNavnType.xsd"),
    ),
    ("types/MonopolSpilFilVersionType.xsd", include_str!("../../regulators/dk/types/MonopolSpilFilVersionType.xsd")),
    (
        "types/MonopolSpilKategoriNavnType.xsd",
        include_str!("../../regulators/dk/types/MonopolSpilKategoriNavnType.xsd"),
    ),
    ("types/MonopolSpilTypeType.xsd", include_str!("../../regulators/dk/types/MonopolSpilTypeType.xsd")),
    ("types/PokerKoebTypeType.xsd", include_str!("../../regulators/dk/types/PokerKoebTypeType.xsd")),
    ("types/PokerKvalifikationType.xsd", include_str!("../../regulators/dk/types/PokerKvalifikationType.xsd")),
    ("types/PositivNegativHeltalType.xsd", include_str!("../../regulators/dk/types/PositivNegativHeltalType.xsd")),
    ("types/ProcentType.xsd", include_str!("../../regulators/dk/types/ProcentType.xsd")),
    ("types/SalgskanalType.xsd", include_str!("../../regulators/dk/types/SalgskanalType.xsd")),
    ("types/SlutdatoType.xsd", include_str!("../../regulators/dk/types/SlutdatoType.xsd")),
    (
        "types/SpilCertifikatTilladelsestypeType.xsd",
        include_str!("../../regulators/dk/types/SpilCertifikatTilladelsestypeType.xsd"),
    ),
    ("types/SpilFilVersionType.xsd", include_str!("../../regulators/dk/types/SpilFilVersionType.xsd")),
    ("types/SpilKategoriNavnType.xsd", include_str!("../../regulators/dk/types/SpilKategoriNavnType.xsd")),
    (
        "types/SpilleautomatKategoriNavnType.xsd",
        include_str!("../../regulators/dk/types/SpilleautomatKategoriNavnType.xsd"),
    ),
    ("types/SportsgrenskodeType.xsd", include_str!("../../regulators/dk/types/SportsgrenskodeType.xsd")),
    ("types/Tal1Type.xsd", include_str!("../../regulators/dk/types/Tal1Type.xsd")),
    ("types/Tal2Type.xsd", include_str!("../../regulators/dk/types/Tal2Type.xsd")),
    ("types/TalHelType.xsd", include_str!("../../regulators/dk/types/TalHelType.xsd")),
    ("types/Tekst300Type.xsd", include_str!("../../regulators/dk/types/Tekst300Type.xsd")),
    ("types/Tekst30Type.xsd", include_str!("../../regulators/dk/types/Tekst30Type.xsd")),
    ("types/Tekst45Type.xsd", include_str!("../../regulators/dk/types/Tekst45Type.xsd")),
    ("types/Tekst45minLength1Type.xsd", include_str!("../../regulators/dk/types/Tekst45minLength1Type.xsd")),
    ("types/TekstKortType.xsd", include_str!("../../regulators/dk/types/TekstKortType.xsd")),
    ("types/TekstLangType.xsd", include_str!("../../regulators/dk/types/TekstLangType.xsd")),
    ("types/ValutaKursType.xsd", include_str!("../../regulators/dk/types/ValutaKursType.xsd")),
    ("types/ValutaType.xsd", include_str!("../../regulators/dk/types/ValutaType.xsd")),
    ("class/Andele.xsd", include_str!("../../regulators/dk/class/Andele.xsd")),
    ("class/Begivenhedsinformation.xsd", include_str!("../../regulators/dk/class/Begivenhedsinformation.xsd")),
    ("class/EndOfDayRapport.xsd", include_str!("../../regulators/dk/class/EndOfDayRapport.xsd")),
    ("class/GevinstPulje.xsd", include_str!("../../regulators/dk/class/GevinstPulje.xsd")),
    ("class/HestDK.xsd", include_str!("../../regulators/dk/class/HestDK.xsd")),
    ("class/HestDKSpilProdukt.xsd", include_str!("../../regulators/dk/class/HestDKSpilProdukt.xsd")),
    ("class/HestPuljespil.xsd", include_str!("../../regulators/dk/class/HestPuljespil.xsd")),
    ("class/Hesteagtig.xsd", include_str!("../../regulators/dk/class/Hesteagtig.xsd")),
    ("class/HesteagtigSpilProdukt.xsd", include_str!("../../regulators/dk/class/HesteagtigSpilProdukt.xsd")),
    ("class/Jackpot.xsd", include_str!("../../regulators/dk/class/Jackpot.xsd")),
    ("class/Kasino.xsd", include_str!("../../regulators/dk/class/Kasino.xsd")),
    ("class/KasinoTraek.xsd", include_str!("../../regulators/dk/class/KasinoTraek.xsd")),
    ("class/Kasinospil.xsd", include_str!("../../regulators/dk/class/Kasinospil.xsd")),
    ("class/KunToppulje.xsd", include_str!("../../regulators/dk/class/KunToppulje.xsd")),
    ("class/Land.xsd", include_str!("../../regulators/dk/class/Land.xsd")),
    ("class/Lodtraekning.xsd", include_str!("../../regulators/dk/class/Lodtraekning.xsd")),
    ("class/Managerspil.xsd", include_str!("../../regulators/dk/class/Managerspil.xsd")),
    ("class/ManagerspilKoeb.xsd", include_str!("../../regulators/dk/class/ManagerspilKoeb.xsd")),
    ("class/MonopolBingoNetskrab.xsd", include_str!("../../regulators/dk/class/MonopolBingoNetskrab.xsd")),
    ("class/MonopolDantoto.xsd", include_str!("../../regulators/dk/class/MonopolDantoto.xsd")),
    ("class/MonopolFysiskSkrab.xsd", include_str!("../../regulators/dk/class/MonopolFysiskSkrab.xsd")),
    ("class/MonopolFysiskSkrabBlok.xsd", include_str!("../../regulators/dk/class/MonopolFysiskSkrabBlok.xsd")),
    ("class/MonopolGevinstStamdata.xsd", include_str!("../../regulators/dk/class/MonopolGevinstStamdata.xsd")),
    ("class/MonopolLandeData.xsd", include_str!("../../regulators/dk/class/MonopolLandeData.xsd")),
    ("class/MonopolPuljespil.xsd", include_str!("../../regulators/dk/class/MonopolPuljespil.xsd")),
    ("class/MonopolSpilFil.xsd", include_str!("../../regulators/dk/class/MonopolSpilFil.xsd")),
    ("class/MonopolSpilKategori.xsd", include_str!("../../regulators/dk/class/MonopolSpilKategori.xsd")),
    ("class/MonopolSpilProdukt.xsd", include_str!("../../regulators/dk/class/MonopolSpilProdukt.xsd")),
    ("class/MonopolTalspil.xsd", include_str!("../../regulators/dk/class/MonopolTalspil.xsd")),
    ("class/OddsAngivelse.xsd", include_str!("../../regulators/dk/class/OddsAngivelse.xsd")),
    ("class/Poker.xsd", include_str!("../../regulators/dk/class/Poker.xsd")),
    ("class/PokerHaand.xsd", include_str!("../../regulators/dk/class/PokerHaand.xsd")),
    ("class/PokerKoeb.xsd", include_str!("../../regulators/dk/class/PokerKoeb.xsd")),
    ("class/PokerSession.xsd", include_str!("../../regulators/dk/class/PokerSession.xsd")),
    ("class/Puljespil.xsd", include_str!("../../regulators/dk/class/Puljespil.xsd")),
    ("class/PuljespilNoegle.xsd", include_str!("../../regulators/dk/class/PuljespilNoegle.xsd")),
    ("class/Raekke.xsd", include_str!("../../regulators/dk/class/Raekke.xsd")),
    ("class/Spil.xsd", include_str!("../../regulators/dk/class/Spil.xsd")),
    ("class/SpilCertifikat.xsd", include_str!("../../regulators/dk/class/SpilCertifikat.xsd")),
    ("class/SpilFil.xsd", include_str!("../../regulators/dk/class/SpilFil.xsd")),
    ("class/SpilKategori.xsd", include_str!("../../regulators/dk/class/SpilKategori.xsd")),
    ("class/SpilProdukt.xsd", include_str!("../../regulators/dk/class/SpilProdukt.xsd")),
    ("class/Spilleautomat.xsd", include_str!("../../regulators/dk/class/Spilleautomat.xsd")),
    ("class/SpilleautomatJackpot.xsd", include_str!("../../regulators/dk/class/SpilleautomatJackpot.xsd")),
    ("class/SpillerInformation.xsd", include_str!("../../regulators/dk/class/SpillerInformation.xsd")),
    ("class/SpilstedEndOfDayRapport.xsd", include_str!("../../regulators/dk/class/SpilstedEndOfDayRapport.xsd")),
    ("class/Sportsgren.xsd", include_str!("../../regulators/dk/class/Sportsgren.xsd")),
    ("class/TalSpil.xsd", include_str!("../../regulators/dk/class/TalSpil.xsd")),
    ("class/TilfaeldighedGenerator.xsd", include_str!("../../regulators/dk/class/TilfaeldighedGenerator.xsd")),
    ("class/TilfaeldighedGeneratorType.xsd", include_str!("../../regulators/dk/class/TilfaeldighedGeneratorType.xsd")),
    ("class/ValutaOplysning.xsd", include_str!("../../regulators/dk/class/ValutaOplysning.xsd")),
    ("view/EndOfDayRapportStrukturType.xsd", include_str!("../../regulators/dk/view/EndOfDayRapportStrukturType.xsd")),
    (
        "view/JackpotUdloesningStrukturType.xsd",
        include_str!("../../regulators/dk/view/JackpotUdloesningStrukturType.xsd"),
    ),
    (
        "view/KasinospilPrSessionStrukturType.xsd",
        include_str!("../../regulators/dk/view/KasinospilPrSessionStrukturType.xsd"),
    ),
    (
        "view/PokerCashGamePrSessionStrukturType.xsd",
        include_str!("../../regulators/dk/view/PokerCashGamePrSessionStrukturType.xsd"),
    ),
    (
        "view/PokerTurneringSlutStrukturType.xsd",
        include_str!("../../regulators/dk/view/PokerTurneringSlutStrukturType.xsd"),
    ),
    (
        "view/PokerTurneringStartStrukturType.xsd",
        include_str!("../../regulators/dk/view/PokerTurneringStartStrukturType.xsd"),
    ),
    (
        "view/PokerTurneringTransaktionStrukturType.xsd",
        include_str!("../../regulators/dk/view/PokerTurneringTransaktionStrukturType.xsd"),
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_dk_schema_is_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regulators/dk");
        let mut on_disk = Vec::new();
        for sub in ["types", "class", "view"] {
            for entry in std::fs::read_dir(root.join(sub)).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                if name.ends_with(".xsd") {
                    on_disk.push(format!("{sub}/{name}"));
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = super::DK_SCHEMAS.iter().map(|(p, _)| (*p).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
    }
}
