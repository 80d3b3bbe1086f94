fn main() {
    std::process::exit(generator::run());
}
