mod crds;
mod examples;
mod invalid;
