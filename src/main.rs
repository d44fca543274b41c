fn main() -> std::process::ExitCode {
    endotower::cli::main()
}
