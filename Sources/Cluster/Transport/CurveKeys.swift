import CZeroMQ

/// CurveZMQ long-term keys as libzmq exchanges them in text: 40-character Z85 strings that
/// encode 32-byte Curve25519 keys. Secret keys must stay private to their owner; public keys
/// go in configuration and allow-lists.
public enum CurveKeys {
    /// Length of a key in Z85 text.
    public static let textLength = 40
    /// Length of a key in bytes.
    public static let byteLength = 32

    /// The 85 characters of ZeroMQ's Z85 alphabet (RFC 32).
    static let alphabet: Set<UInt8> = Set(Array(
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8))

    /// A fresh key pair from libsodium's random source (zmq_curve_keypair).
    public static func generate() throws -> (publicKey: String, secretKey: String) {
        try requireSupport()
        var publicKey = [CChar](repeating: 0, count: textLength + 1)
        var secretKey = [CChar](repeating: 0, count: textLength + 1)
        try call("zmq_curve_keypair") { zmq_curve_keypair(&publicKey, &secretKey) }
        return (String(cString: publicKey), String(cString: secretKey))
    }

    /// The public key belonging to a secret key (zmq_curve_public), so a configuration needs
    /// to store only the secret.
    public static func publicKey(fromSecret secretKey: String) throws -> String {
        try requireSupport()
        try validate(secretKey)
        var publicKey = [CChar](repeating: 0, count: textLength + 1)
        try call("zmq_curve_public") { zmq_curve_public(&publicKey, secretKey) }
        return String(cString: publicKey)
    }

    /// Checks that `key` is 40 characters of the Z85 alphabet; throws `.invalidCurveKey`
    /// saying what is wrong (length, or the first bad character and its position).
    public static func validate(_ key: String) throws {
        let characters = Array(key.utf8)
        guard characters.count == textLength else {
            throw ZMQError.invalidCurveKey(
                reason: "expected \(textLength) Z85 characters, got \(key.count)")
        }
        if let position = characters.firstIndex(where: { !alphabet.contains($0) }) {
            let character = String(decoding: [characters[position]], as: UTF8.self)
            throw ZMQError.invalidCurveKey(
                reason: "character '\(character)' at position \(position + 1) is not in the Z85 alphabet")
        }
    }

    /// The 32 bytes of a Z85 key.
    public static func decode(_ key: String) throws -> [UInt8] {
        try validate(key)
        var bytes = [UInt8](repeating: 0, count: byteLength)
        guard zmq_z85_decode(&bytes, key) != nil else {
            // Every character is in the alphabet, so only a 5-character group that overflows
            // 32 bits gets here.
            throw ZMQError.invalidCurveKey(reason: "'\(key)' does not decode to 32 bytes")
        }
        return bytes
    }

    /// The Z85 text of a 32-byte key.
    public static func encode(_ bytes: [UInt8]) -> String {
        precondition(bytes.count == byteLength, "a CURVE key has \(byteLength) bytes")
        var text = [CChar](repeating: 0, count: textLength + 1)
        zmq_z85_encode(&text, bytes, bytes.count)
        return String(cString: text)
    }

    /// Throws `.curveUnavailable` unless libzmq was built with CURVE.
    static func requireSupport() throws {
        guard ZMQContext.hasCapability("curve") else { throw ZMQError.curveUnavailable }
    }
}
