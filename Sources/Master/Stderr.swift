import Foundation

/// A message for the person at the terminal (errors and warnings of the CLI).
func printError(_ message: String) {
    FileHandle.standardError.write(Data(message.utf8))
}
