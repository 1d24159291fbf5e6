fn main() -> std::process::ExitCode {
    dlog_server::cli::main()
}
