fn main() {
    std::process::exit(ctfwd::cli::main(std::env::args().collect()));
}
