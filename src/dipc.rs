//! Placeholder: the dipc library is added by its issue.
