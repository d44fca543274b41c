//! The label vocabulary of the synthetic video: lesion classes, anatomical
//! sites and frame episodes. Serialised in snake_case (`"motion_blur"`).

use serde::{Deserialize, Serialize};

/// What kind of lesion a truth box holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LesionClass {
    /// Raised polyp: reddish-brown lobulated dome with a granular surface and
    /// a specular rim.
    Adenoma,
    /// Flat, smooth, pale polyp of nearly the mucosa's colour.
    Hyperplastic,
    /// Whitish-yellow fibrin base inside a red halo, irregular border.
    Ulcer,
}

impl LesionClass {
    /// Every class, in index order.
    pub const ALL: [LesionClass; 3] = [Self::Adenoma, Self::Hyperplastic, Self::Ulcer];

    /// The snake_case name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Self::Adenoma => "adenoma",
            Self::Hyperplastic => "hyperplastic",
            Self::Ulcer => "ulcer",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The anatomical site the scope is in; each has its own mucosa.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// Pale salmon-pink, longitudinal folds, fine palisade vessels.
    Esophagus,
    /// Deep orange-red, thick meandering rugae, coarse granular surface.
    Stomach,
    /// Glossy pink, transverse haustral folds, dense branching vessels.
    Colon,
}

impl Site {
    /// Every site, in index order.
    pub const ALL: [Site; 3] = [Self::Esophagus, Self::Stomach, Self::Colon];

    /// The snake_case name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Self::Esophagus => "esophagus",
            Self::Stomach => "stomach",
            Self::Colon => "colon",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What happened to a frame on its way out of the (simulated) camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Episode {
    /// A normal, sharp frame.
    Clear,
    /// The camera moved fast: the image is smeared along one direction.
    MotionBlur,
    /// The previous frame is delivered again (same buffer).
    Freeze,
    /// The image is black (light off, lens covered).
    Black,
    /// The frame never arrives (`next_frame` returns `None`).
    Dropout,
}

impl Episode {
    /// Every episode, in index order.
    pub const ALL: [Episode; 5] = [Self::Clear, Self::MotionBlur, Self::Freeze, Self::Black, Self::Dropout];

    /// The snake_case name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Self::Clear => "clear",
            Self::MotionBlur => "motion_blur",
            Self::Freeze => "freeze",
            Self::Black => "black",
            Self::Dropout => "dropout",
        }
    }
}
