//! One module per page or resource.

pub mod dashboard;
pub mod dead_letters;
pub mod login;
pub mod onboardings;
pub mod people;
pub mod templates;
