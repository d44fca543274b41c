//! The topic tree, versioned in its prefix: `endotower/v1/<tower-id>/...`.
//! A breaking payload change bumps the version in the prefix (and
//! `payloads::SCHEMA_VERSION`), so old and new subscribers can coexist.

/// Topic version; part of every topic.
pub const VERSION: &str = "v1";

/// All topics of one tower.
#[derive(Debug, Clone)]
pub struct Topics {
    root: String,
}

impl Topics {
    pub fn new(tower_id: &str) -> Self {
        Self { root: format!("endotower/{VERSION}/{tower_id}") }
    }
    pub fn root(&self) -> &str {
        &self.root
    }
    /// Birth certificate (retained, QoS 1), on every connect.
    pub fn birth(&self) -> String {
        format!("{}/birth", self.root)
    }
    /// Death certificate: the QoS 1 last will, and published on a clean stop.
    pub fn death(&self) -> String {
        format!("{}/death", self.root)
    }
    /// Retained state of one device (`insufflator`, `light`, `camera`, `pedal`, `ai`, `tower`).
    pub fn state(&self, device: &str) -> String {
        format!("{}/state/{device}", self.root)
    }
    /// Telemetry sample batches (QoS 0; may drop, counted).
    pub fn telemetry(&self) -> String {
        format!("{}/telemetry", self.root)
    }
    /// Alarms and events from the journal (QoS 1, replayed, de-duplicated by id).
    pub fn events(&self) -> String {
        format!("{}/events", self.root)
    }
    /// Journaled remote commands and their outcome (QoS 1, replayed).
    pub fn commands(&self) -> String {
        format!("{}/commands", self.root)
    }
    /// AI result summaries (QoS 0; no images).
    pub fn ai(&self) -> String {
        format!("{}/ai", self.root)
    }
    /// Commands from one client.
    pub fn cmd(&self, client: &str) -> String {
        format!("{}/cmd/{client}", self.root)
    }
    /// The subscription for every client's commands.
    pub fn cmd_filter(&self) -> String {
        format!("{}/cmd/+", self.root)
    }
    /// Replies to one client.
    pub fn resp(&self, client: &str) -> String {
        format!("{}/resp/{client}", self.root)
    }
    /// The client id of a command topic, if `topic` is one.
    pub fn cmd_client<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(self.root.as_str())?.strip_prefix("/cmd/")?;
        (!rest.is_empty() && !rest.contains('/')).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_versioned_per_tower_and_the_client_id_comes_from_the_command_topic() {
        let t = Topics::new("tower-1");
        assert_eq!(t.state("light"), "endotower/v1/tower-1/state/light");
        assert_eq!(t.cmd_client("endotower/v1/tower-1/cmd/hmi-2"), Some("hmi-2"));
        assert_eq!(t.cmd_client("endotower/v1/tower-1/cmd/"), None);
        assert_eq!(t.cmd_client("endotower/v1/tower-2/cmd/x"), None);
        assert_eq!(t.cmd_client("endotower/v1/tower-1/cmd/a/b"), None);
    }
}
