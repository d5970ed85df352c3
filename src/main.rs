fn main() -> std::process::ExitCode {
    hookline::cli::main()
}
