/// A strict UTF-8 decoder that reports where decoding fails instead of repairing, so a corpus
/// is either read exactly or rejected with the offset of the offending byte.
///
/// Well-formed sequences follow Unicode 15, table 3-7: overlong forms, surrogates (U+D800..DFFF)
/// and code points past U+10FFFF are errors, as in Python's strict `utf-8` codec.
enum StrictUTF8 {
    struct Failure: Error, Equatable {
        /// 0-based offset of the first byte of the sequence that does not decode.
        var offset: Int
        var byte: UInt8
        var reason: String
    }

    /// Decodes the sequences of `bytes` that start in `range` into code points written to
    /// `output` (capacity ≥ range.count) and returns how many were written and where decoding
    /// stopped: range.upperBound, or past it when a sequence runs over (continuation bytes
    /// are read beyond the range, so a failure is the one decoding all of `bytes` reports).
    static func decode(_ bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>,
                       into output: UnsafeMutableBufferPointer<Int32>) throws(Failure) -> (written: Int, end: Int) {
        precondition(output.count >= range.count && range.upperBound <= bytes.count)
        let n = bytes.count
        var i = range.lowerBound, written = 0
        while i < range.upperBound {
            let lead = bytes[i]
            if lead < 0x80 {
                output[written] = Int32(lead)
                written += 1
                i += 1
                continue
            }
            // Length and the allowed range of the second byte (table 3-7).
            let length: Int, secondLow: UInt8, secondHigh: UInt8
            switch lead {
            case 0xC2...0xDF: (length, secondLow, secondHigh) = (2, 0x80, 0xBF)
            case 0xE0: (length, secondLow, secondHigh) = (3, 0xA0, 0xBF)
            case 0xE1...0xEC, 0xEE...0xEF: (length, secondLow, secondHigh) = (3, 0x80, 0xBF)
            case 0xED: (length, secondLow, secondHigh) = (3, 0x80, 0x9F)
            case 0xF0: (length, secondLow, secondHigh) = (4, 0x90, 0xBF)
            case 0xF1...0xF3: (length, secondLow, secondHigh) = (4, 0x80, 0xBF)
            case 0xF4: (length, secondLow, secondHigh) = (4, 0x80, 0x8F)
            case 0x80...0xBF:
                throw Failure(offset: i, byte: lead, reason: "unexpected continuation byte")
            default:
                throw Failure(offset: i, byte: lead, reason: "invalid start byte")
            }
            for k in 1..<length {
                guard i + k < n else {
                    throw Failure(offset: i, byte: lead, reason: "sequence cut off by the end of the file")
                }
                let byte = bytes[i + k]
                let (low, high) = k == 1 ? (secondLow, secondHigh) : (UInt8(0x80), UInt8(0xBF))
                guard byte >= low && byte <= high else {
                    throw Failure(offset: i, byte: lead, reason: "invalid continuation byte")
                }
            }
            var value = UInt32(lead) & (0xFF >> UInt32(length + 1))
            for k in 1..<length { value = value << 6 | UInt32(bytes[i + k] & 0x3F) }
            output[written] = Int32(bitPattern: value)
            written += 1
            i += length
        }
        return (written, i)
    }

    /// Where to end a chunk of `bytes` near `end`: at the first of end, end−1, end−2, end−3
    /// that does not hold a continuation byte (so that no well-formed sequence spans two
    /// chunks), else at `end` (four continuation bytes in a row are an error anyway).
    static func chunkEnd(_ bytes: UnsafeBufferPointer<UInt8>, near end: Int, after start: Int) -> Int {
        guard end < bytes.count else { return bytes.count }
        for e in stride(from: end, to: max(start, end - 4), by: -1) where bytes[e] & 0xC0 != 0x80 { return e }
        return end
    }
}
