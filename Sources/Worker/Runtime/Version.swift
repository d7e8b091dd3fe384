public enum DfgetVersion {
    public static let string = "0.1.0"
}
