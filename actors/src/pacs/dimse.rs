//! The DICOM network client: an association (dicom-ul) and the two DIMSE
//! services the tower uses as an SCU, C-STORE (stills to the PACS) and
//! C-FIND on the Modality Worklist (PS3.7 9.1.1, 9.1.2; PS3.4 K.6).
//!
//! Blocking, with socket timeouts on connect, read and write: call it from
//! a blocking thread, never from the async runtime.

use crate::error_chain::error_chain;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::{entries, TransferSyntaxRegistry};
use dicom_ul::association::client::{ClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// A DICOM application entity to talk to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomPeer {
    /// `host:port`.
    pub address: String,
    /// The peer's AE title.
    pub called_ae: String,
    /// The tower's AE title.
    pub calling_ae: String,
    /// Connect, read and write timeout.
    pub timeout_ms: u64,
}

/// Check an AE title (PS3.5 6.2: 1 to 16 characters, no backslash or
/// control characters, not only spaces).
pub fn check_ae(field: &str, ae: &str) -> Result<(), crate::config::ConfigError> {
    let ok = (1..=16).contains(&ae.len()) && ae.chars().all(|c| c.is_ascii_graphic() && c != '\\' || c == ' ') && !ae.trim().is_empty();
    if ok {
        Ok(())
    } else {
        Err(crate::config::ConfigError::new(field, format!("{ae:?}"), "an AE title of 1 to 16 printable ASCII characters, no backslash"))
    }
}

impl DicomPeer {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        use crate::config::{check_int, ConfigError};
        let port_ok =
            self.address.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(ConfigError::new(format!("{path}.address"), format!("{:?}", self.address), "host:port, like \"127.0.0.1:11112\""));
        }
        check_ae(&format!("{path}.called_ae"), &self.called_ae)?;
        check_ae(&format!("{path}.calling_ae"), &self.calling_ae)?;
        check_int(&format!("{path}.timeout_ms"), self.timeout_ms, 100, 120_000, "ms")
    }

    /// `AE@host:port`, as logs and alarms name the peer.
    pub fn name(&self) -> String {
        format!("{}@{}", self.called_ae, self.address)
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DimseError {
    #[error("{peer}: cannot associate: {message}")]
    Associate { peer: String, message: String },
    #[error("{peer}: does not accept {sop_class}")]
    NotAccepted { peer: String, sop_class: String },
    #[error("{peer}: {message}")]
    Network { peer: String, message: String },
    #[error("{peer}: bad message: {message}")]
    Protocol { peer: String, message: String },
}

/// The outcome of one C-STORE (PS3.4 Annex B.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    /// Stored (success or warning).
    Stored(u16),
    /// Out of resources or busy: try again later.
    Retry(u16),
    /// Refused for good (data set does not match, cannot understand).
    Refused(u16),
}

impl StoreStatus {
    pub fn of(status: u16) -> StoreStatus {
        match status {
            0x0000 | 0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => StoreStatus::Stored(status),
            0xA700..=0xA7FF | 0x0213 | 0x0210 | 0xFE00 => StoreStatus::Retry(status),
            _ => StoreStatus::Refused(status),
        }
    }
}

/// An open association with one accepted presentation context.
pub struct Association {
    peer: String,
    scu: Option<ClientAssociation<TcpStream>>,
    pc_id: u8,
    ts: String,
    next_id: u16,
}

fn elem(tag: dicom_core::Tag, vr: VR, v: PrimitiveValue) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, v)
}

impl Association {
    /// Associate for `sop_class`, proposing Explicit then Implicit VR Little
    /// Endian.
    pub fn open(peer: &DicomPeer, sop_class: &str) -> Result<Association, DimseError> {
        let name = peer.name();
        let t = Duration::from_millis(peer.timeout_ms);
        let scu = ClientAssociationOptions::new()
            .calling_ae_title(peer.calling_ae.as_str())
            .called_ae_title(peer.called_ae.as_str())
            .with_presentation_context(sop_class, vec![super::still::EXPLICIT_VR_LE, super::still::IMPLICIT_VR_LE])
            .connection_timeout(t)
            .read_timeout(t)
            .write_timeout(t)
            .establish(peer.address.as_str())
            .map_err(|e| DimseError::Associate { peer: name.clone(), message: error_chain(&e) })?;
        let pc = scu
            .presentation_contexts()
            .iter()
            .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .cloned()
            .ok_or_else(|| DimseError::NotAccepted { peer: name.clone(), sop_class: sop_class.to_string() })?;
        let ts = pc.transfer_syntax.trim_end_matches(['\0', ' ']).to_string();
        Ok(Association { peer: name, scu: Some(scu), pc_id: pc.id, ts, next_id: 1 })
    }

    fn scu(&mut self) -> Result<&mut ClientAssociation<TcpStream>, DimseError> {
        self.scu.as_mut().ok_or_else(|| DimseError::Network { peer: self.peer.clone(), message: "association closed".into() })
    }

    fn net(&self, e: impl std::error::Error) -> DimseError {
        DimseError::Network { peer: self.peer.clone(), message: error_chain(&e) }
    }

    fn proto(&self, message: impl Into<String>) -> DimseError {
        DimseError::Protocol { peer: self.peer.clone(), message: message.into() }
    }

    /// The negotiated transfer syntax of the data sets.
    fn data_ts(&self) -> Result<&'static dicom_encoding::TransferSyntax, DimseError> {
        TransferSyntaxRegistry.get(&self.ts).ok_or_else(|| self.proto(format!("unknown transfer syntax {}", self.ts)))
    }

    /// Send a command (Implicit VR LE, with its group length) and a data set.
    fn send(&mut self, mut command: InMemDicomObject, data: &[u8]) -> Result<(), DimseError> {
        let ts = entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut body = Vec::new();
        command.write_dataset_with_ts(&mut body, &ts).map_err(|e| self.proto(e.to_string()))?;
        command.put(elem(tags::COMMAND_GROUP_LENGTH, VR::UL, PrimitiveValue::from(body.len() as u32)));
        let mut cmd = Vec::with_capacity(body.len() + 12);
        command.write_dataset_with_ts(&mut cmd, &ts).map_err(|e| self.proto(e.to_string()))?;
        let pc_id = self.pc_id;
        let pdu = Pdu::PData {
            data: vec![PDataValue { presentation_context_id: pc_id, value_type: PDataValueType::Command, is_last: true, data: cmd }],
        };
        let sent = self.scu()?.send(&pdu);
        sent.map_err(|e| self.net(e))?;
        let written = {
            let scu = self.scu()?;
            let mut w = scu.send_pdata(pc_id);
            w.write_all(data).and_then(|()| w.flush())
        };
        written.map_err(|e| self.net(e))
    }

    /// Receive one message: its command and, if it has one, its data set.
    fn receive(&mut self) -> Result<(InMemDicomObject, Option<Vec<u8>>), DimseError> {
        let (mut cmd, mut data) = (Vec::new(), Vec::new());
        let (mut command, mut data_done) = (None::<InMemDicomObject>, false);
        loop {
            let received = self.scu()?.receive();
            let pdu = received.map_err(|e| self.net(e))?;
            match pdu {
                Pdu::PData { data: pdvs } => {
                    for pdv in pdvs {
                        match pdv.value_type {
                            PDataValueType::Command => {
                                cmd.extend_from_slice(&pdv.data);
                                if pdv.is_last {
                                    let ts = entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
                                    command =
                                        Some(InMemDicomObject::read_dataset_with_ts(&cmd[..], &ts).map_err(|e| self.proto(e.to_string()))?);
                                }
                            }
                            PDataValueType::Data => {
                                data.extend_from_slice(&pdv.data);
                                data_done |= pdv.is_last;
                            }
                        }
                    }
                }
                Pdu::AbortRQ { source } => return Err(self.proto(format!("association aborted by the peer ({source:?})"))),
                Pdu::ReleaseRQ => return Err(self.proto("the peer released the association mid-operation")),
                other => return Err(self.proto(format!("unexpected PDU {other:?}"))),
            }
            let has_data =
                command.as_ref().map(|c| c.element(tags::COMMAND_DATA_SET_TYPE).ok().and_then(|e| e.to_int::<u16>().ok()) != Some(0x0101));
            match (command.take(), has_data) {
                (Some(c), Some(false)) => return Ok((c, None)),
                (Some(c), Some(true)) if data_done => return Ok((c, Some(data))),
                (c, _) => command = c,
            }
        }
    }

    fn status(&self, c: &InMemDicomObject) -> Result<u16, DimseError> {
        c.element(tags::STATUS).ok().and_then(|e| e.to_int::<u16>().ok()).ok_or_else(|| self.proto("response without a status"))
    }

    /// C-STORE one instance; `file` is a Part 10 object (its data set is
    /// re-encoded in the negotiated transfer syntax).
    pub fn store(&mut self, file: &dicom_object::DefaultDicomObject) -> Result<StoreStatus, DimseError> {
        let sop_class = file.meta().media_storage_sop_class_uid().trim_end_matches(['\0', ' ']).to_string();
        let sop_uid = file.meta().media_storage_sop_instance_uid().trim_end_matches(['\0', ' ']).to_string();
        let ts = self.data_ts()?;
        let mut data = Vec::new();
        file.write_dataset_with_ts(&mut data, ts).map_err(|e| self.proto(e.to_string()))?;
        let id = self.take_id();
        let command = InMemDicomObject::from_element_iter([
            elem(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(sop_class)),
            elem(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001u16)),
            elem(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(id)),
            elem(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
            elem(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000u16)),
            elem(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop_uid)),
        ]);
        self.send(command, &data)?;
        let (rsp, _) = self.receive()?;
        Ok(StoreStatus::of(self.status(&rsp)?))
    }

    /// C-FIND with `query` as the identifier; the matches (pending
    /// responses) until the final status.
    pub fn find(&mut self, sop_class: &str, query: &InMemDicomObject) -> Result<Vec<InMemDicomObject>, DimseError> {
        let ts = self.data_ts()?;
        let mut data = Vec::new();
        query.write_dataset_with_ts(&mut data, ts).map_err(|e| self.proto(e.to_string()))?;
        let id = self.take_id();
        let command = InMemDicomObject::from_element_iter([
            elem(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(sop_class)),
            elem(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0020u16)),
            elem(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(id)),
            elem(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
            elem(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000u16)),
        ]);
        self.send(command, &data)?;
        let mut found = Vec::new();
        loop {
            let (rsp, data) = self.receive()?;
            match self.status(&rsp)? {
                0xFF00 | 0xFF01 => {
                    let data = data.ok_or_else(|| self.proto("a pending C-FIND response without an identifier"))?;
                    found.push(InMemDicomObject::read_dataset_with_ts(&data[..], ts).map_err(|e| self.proto(e.to_string()))?);
                }
                0x0000 => return Ok(found),
                s => return Err(self.proto(format!("C-FIND failed with status {s:04X}H"))),
            }
        }
    }

    fn take_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Release the association (A-RELEASE).
    pub fn release(mut self) {
        if let Some(scu) = self.scu.take() {
            let _ = scu.release();
        }
    }
}

impl Drop for Association {
    fn drop(&mut self) {
        if let Some(scu) = self.scu.take() {
            let _ = scu.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> DicomPeer {
        DicomPeer { address: "127.0.0.1:1".into(), called_ae: "PACS".into(), calling_ae: "ENDOTOWER".into(), timeout_ms: 500 }
    }

    #[test]
    fn store_statuses_sort_into_stored_retry_and_refused() {
        assert_eq!(StoreStatus::of(0x0000), StoreStatus::Stored(0));
        assert_eq!(StoreStatus::of(0xB007), StoreStatus::Stored(0xB007));
        assert_eq!(StoreStatus::of(0xA700), StoreStatus::Retry(0xA700));
        assert_eq!(StoreStatus::of(0xA900), StoreStatus::Refused(0xA900));
        assert_eq!(StoreStatus::of(0xC000), StoreStatus::Refused(0xC000));
    }

    #[test]
    fn bad_peers_are_refused_naming_the_field() {
        let mut p = peer();
        p.address = "pacs.local".into();
        assert!(p.validate("pacs").unwrap_err().to_string().contains("pacs.address"));
        let mut p = peer();
        p.called_ae = "A-TITLE-LONGER-THAN-16".into();
        assert!(p.validate("pacs").unwrap_err().to_string().contains("pacs.called_ae"));
        let mut p = peer();
        p.calling_ae = "BAD\\AE".into();
        assert!(p.validate("pacs").unwrap_err().to_string().contains("pacs.calling_ae"));
        assert!(peer().validate("pacs").is_ok());
    }

    #[test]
    fn a_peer_that_is_not_there_is_an_association_error_naming_it() {
        let e = Association::open(&peer(), super::super::still::VL_ENDOSCOPIC_IMAGE).err().unwrap();
        assert!(matches!(e, DimseError::Associate { .. }), "{e}");
        assert!(e.to_string().contains("PACS@127.0.0.1:1"), "{e}");
    }
}
