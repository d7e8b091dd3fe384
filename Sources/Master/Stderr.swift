import Foundation

/// A message for the person at the terminal (errors and warnings of the CLI).
func printError(_ message: String) {
    FileHandle.standardError.write(Data(message.utf8))
}

/// A line on standard output, written at once (tests and scripts wait for the startup line).
func printOut(_ message: String) {
    FileHandle.standardOutput.write(Data(message.utf8))
}
