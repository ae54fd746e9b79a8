/// The corpus `recur train` uses when no `--data` is given: a generated play of about 400 KB.
///
/// Generated rather than shipped so the package carries no data file, and built from a small
/// grammar so that it has structure a recurrent model can learn and a unigram model cannot:
/// speaker names in capitals before ':' and a newline, acts and scenes counted in Roman numerals,
/// subject-verb-object sentences with agreement, counting runs ("one, two, three"), rhyming
/// couplets, matched brackets and quotes, and questions answered in the next speech by
/// repeating their words. ASCII only: 64 symbols.
///
/// Deterministic on every platform: it draws only from `SeededGenerator` (through
/// `nextInt(below:)`) and never iterates a `Set` or `Dictionary`.
public enum BuiltinCorpus {
    public static let defaultSeed: UInt64 = 1_606
    /// The generator stops at the first scene end past this many bytes (= scalars).
    public static let defaultTargetSize = 400_000

    /// The built-in text: `text(seed: defaultSeed, targetSize: defaultTargetSize)`.
    public static func generate() -> String {
        text(seed: defaultSeed, targetSize: defaultTargetSize)
    }

    /// A generated play of at least `targetSize` bytes, ending at a scene boundary.
    public static func text(seed: UInt64, targetSize: Int) -> String {
        var writer = PlayWriter(seed: seed)
        while writer.output.count < targetSize {
            writer.writePlay(until: targetSize)
        }
        return String(decoding: writer.output, as: UTF8.self)
    }
}

extension Corpus {
    /// The built-in generated play (`BuiltinCorpus.generate()`), named "builtin".
    public static let builtinName = "builtin"

    public static func builtin() -> Corpus {
        Corpus(text: BuiltinCorpus.generate(), name: builtinName)
    }
}

/// The grammar: word lists and the rules that join them. Appends ASCII to `output`.
private struct PlayWriter {
    var output: [UInt8] = []
    var random: SeededGenerator

    init(seed: UInt64) {
        random = SeededGenerator(seed: seed)
        output.reserveCapacity(BuiltinCorpus.defaultTargetSize + 8_192)
    }

    // MARK: Lexicon

    static let cast = ["KING", "QUEEN", "FOOL", "GHOST", "NURSE", "HERALD", "SAILOR", "MERCHANT",
                       "WITCH", "PRINCE", "DUKE", "JESTER"]
    static let nouns = ["king", "queen", "fool", "ghost", "crown", "sword", "rose", "raven", "castle",
                        "river", "moon", "star", "horse", "tower", "letter", "ring", "candle",
                        "garden", "bell", "clock", "mirror", "lamb", "ship", "storm", "key", "box",
                        "jewel", "book", "bridge", "fox"]
    static let adjectives = ["old", "young", "red", "pale", "silver", "golden", "dark", "quiet",
                             "proud", "broken", "gentle", "bitter", "sweet", "wild", "little", "cold",
                             "brave", "false", "true", "hollow"]
    /// (third person singular, plain form)
    static let verbs = [("sees", "see"), ("holds", "hold"), ("loves", "love"), ("fears", "fear"),
                        ("finds", "find"), ("keeps", "keep"), ("follows", "follow"),
                        ("carries", "carry"), ("breaks", "break"), ("takes", "take"),
                        ("calls", "call"), ("guards", "guard"), ("hides", "hide"), ("seeks", "seek"),
                        ("wakes", "wake")]
    static let places = ["in the garden", "under the bridge", "behind the tower", "beyond the river",
                         "upon the hill", "inside the box", "beneath the moon", "at the gate",
                         "on the ship", "by the candle"]
    static let greetings = ["Good morrow", "Good even", "Hail", "Farewell", "Peace", "Hark"]
    static let addresses = ["my lord", "my lady", "good sir", "sweet friend", "old man", "fair maid"]
    static let exclamations = ["Alas", "O woe", "Fie", "Huzzah", "Marry", "Forsooth"]
    static let numbers = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                          "ten", "eleven", "twelve"]
    static let roman = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"]
    static let kinds = ["TRAGEDY", "COMEDY", "HISTORY", "LAMENT"]
    static let settings = ["A hall in the castle", "The garden at night", "A ship at sea", "A street",
                           "The top of the tower", "A heath", "The king's chamber", "Before the gate"]
    static let actions = ["draws a sword", "kneels", "weeps", "laughs", "reads the letter",
                          "rings the bell", "looks at the moon", "hides the key"]
    static let rhymes = [["night", "light", "sight", "bright", "flight", "white"],
                         ["day", "way", "stay", "play", "gray", "away"],
                         ["king", "sing", "ring", "thing", "spring", "wing"],
                         ["sea", "free", "tree", "thee", "me"],
                         ["heart", "part", "art", "start", "apart"],
                         ["crown", "down", "town", "gown", "drown"],
                         ["stone", "alone", "bone", "known", "throne"]]
    static let couplets = [("When", "then"), ("While", "and"), ("Though", "yet"), ("If", "so")]
    static let links = ["by", "for", "of", "to", "with"]

    // MARK: Choices

    mutating func pick<Element>(_ list: [Element]) -> Element { list[random.nextInt(below: list.count)] }
    mutating func chance(_ numerator: Int, in denominator: Int) -> Bool {
        random.nextInt(below: denominator) < numerator
    }
    mutating func write(_ text: String) { output.append(contentsOf: text.utf8) }

    static func capitalized(_ text: String) -> String { text.prefix(1).uppercased() + text.dropFirst() }
    static func plural(_ noun: String) -> String {
        noun.hasSuffix("x") || noun.hasSuffix("s") ? noun + "es" : noun + "s"
    }

    /// "the proud raven" or "the raven".
    mutating func nounPhrase() -> (text: String, noun: String) {
        let noun = pick(Self.nouns)
        return chance(1, in: 2) ? ("the " + pick(Self.adjectives) + " " + noun, noun) : ("the " + noun, noun)
    }

    /// "the proud raven sees the moon", lower case, no final punctuation.
    mutating func clause() -> String {
        let subject = nounPhrase().text, verb = pick(Self.verbs).0, object = nounPhrase().text
        return subject + " " + verb + " " + object
    }

    // MARK: Lines

    /// One spoken line, ending in a newline. A question sets `answer`, which the next speech
    /// must begin with.
    mutating func line(answer: inout String?) -> String {
        switch random.nextInt(below: 12) {
        case 0, 1, 2:
            return Self.capitalized(clause()) + (chance(1, in: 4) ? "!" : ".") + "\n"
        case 3:
            let start = random.nextInt(below: 6), length = 3 + random.nextInt(below: 5)
            if chance(1, in: 3) {
                let words = Self.numbers[start..<start + length].reversed()
                return Self.capitalized(words.joined(separator: ", ")) + "!\n"
            }
            let words = Self.numbers[start..<start + length]
            return Self.capitalized(words.joined(separator: ", ")) + ".\n"
        case 4:
            let phrase = nounPhrase().text
            let place = pick(Self.places)
            answer = Self.capitalized(phrase) + " is " + place + ".\n"
            return "Where is " + phrase + "?\n"
        case 5:
            let verb = pick(Self.verbs), (object, _) = nounPhrase(), subject = nounPhrase().text
            answer = Self.capitalized(subject) + " " + verb.0 + " " + object + ".\n"
            return "Who " + verb.0 + " " + object + "?\n"
        case 6:
            let noun = pick(Self.nouns), adjective = pick(Self.adjectives)
            answer = chance(1, in: 2)
                ? "Yes, the " + noun + " is " + adjective + ".\n"
                : "No, the " + noun + " is not " + adjective + ".\n"
            return "Is the " + noun + " " + adjective + "?\n"
        case 7:
            let noun = pick(Self.nouns), count = 2 + random.nextInt(below: 6)
            let counted = Self.numbers[0..<count].joined(separator: ", ")
            answer = Self.capitalized(counted) + ": " + Self.numbers[count - 1] + " " + Self.plural(noun) + ".\n"
            return "How many " + Self.plural(noun) + "?\n"
        case 8:
            let noun = pick(Self.nouns), said = clause()
            answer = "The " + noun + " says, \"" + Self.capitalized(said) + ".\"\n"
            return "What says the " + noun + "?\n"
        case 9:
            let direction = chance(1, in: 2) ? "aside" : "to the " + pick(Self.nouns)
            return "(" + direction + ") " + Self.capitalized(clause()) + ".\n"
        case 10:
            return pick(Self.greetings) + ", " + pick(Self.addresses) + "! " + pick(Self.exclamations) + "!\n"
        default:
            let group = pick(Self.rhymes)
            let first = random.nextInt(below: group.count)
            let second = (first + 1 + random.nextInt(below: group.count - 1)) % group.count
            let (opener, closer) = pick(Self.couplets)
            return opener + " " + nounPhrase().text + " " + pick(Self.verbs).0 + " " + pick(Self.links)
                + " " + group[first] + ",\n" + closer + " " + nounPhrase().text + " " + pick(Self.verbs).0
                + " " + pick(Self.links) + " " + group[second] + ".\n"
        }
    }

    // MARK: Structure

    /// SPEAKER:\nlines\n\n — first the answer owed to the previous speech, or sometimes an
    /// echo of its last line turned into a question.
    mutating func speech(by speaker: String, answer: inout String?, previousLine: inout String?) {
        write(speaker + ":\n")
        var lines = 1 + random.nextInt(below: 3)
        if let owed = answer {
            write(owed)
            answer = nil
            lines -= 1
        } else if let echoed = previousLine, echoed.hasSuffix(".\n"), chance(1, in: 4) {
            write(String(echoed.dropLast(2)) + "? " + pick(Self.exclamations) + "!\n")
            lines -= 1
        }
        var last: String?
        for _ in 0..<lines {
            let text = line(answer: &answer)
            write(text)
            last = text
            if answer != nil { break }
        }
        previousLine = last
        write("\n")
    }

    mutating func scene(number: Int, players: [String]) {
        write("SCENE " + Self.roman[number] + ". " + pick(Self.settings) + ".\n\n")
        var onStage: [String] = []
        var offStage = players
        for _ in 0..<(2 + random.nextInt(below: 2)) {
            onStage.append(offStage.remove(at: random.nextInt(below: offStage.count)))
        }
        write("Enter " + Self.listed(onStage) + ".\n\n")
        var answer: String?, previousLine: String?, previousSpeaker = ""
        for _ in 0..<(8 + random.nextInt(below: 9)) {
            if answer == nil, chance(1, in: 8) {
                if onStage.count > 2, chance(1, in: 2) {
                    let leaving = onStage.remove(at: random.nextInt(below: onStage.count))
                    offStage.append(leaving)
                    write("[Exit " + leaving + ".]\n\n")
                } else if !offStage.isEmpty {
                    let entering = offStage.remove(at: random.nextInt(below: offStage.count))
                    onStage.append(entering)
                    write("[Enter " + entering + ".]\n\n")
                } else {
                    write("[" + pick(onStage) + " " + pick(Self.actions) + ".]\n\n")
                }
                previousLine = nil
            }
            var speaker = pick(onStage)
            while speaker == previousSpeaker { speaker = pick(onStage) }
            previousSpeaker = speaker
            speech(by: speaker, answer: &answer, previousLine: &previousLine)
        }
        if let owed = answer {  // nobody leaves a question unanswered
            var speaker = pick(onStage)
            while speaker == previousSpeaker { speaker = pick(onStage) }
            write(speaker + ":\n" + owed + "\n")
        }
        write("Exeunt.\n\n")
    }

    /// Acts I-V of one play, stopping early at a scene end once `targetSize` bytes exist.
    mutating func writePlay(until targetSize: Int) {
        var pool = Self.cast, players: [String] = []
        for _ in 0..<5 { players.append(pool.remove(at: random.nextInt(below: pool.count))) }
        let title = "THE " + pick(Self.kinds) + " OF THE " + pick(Self.adjectives).uppercased()
            + " " + pick(Self.nouns).uppercased()
        write(title + "\n\n")
        for act in 0..<5 {
            write("ACT " + Self.roman[act] + "\n\n")
            for number in 0..<(2 + random.nextInt(below: 3)) {
                scene(number: number, players: players)
                if output.count >= targetSize { return }
            }
        }
    }

    /// "A", "A and B", "A, B and C".
    static func listed(_ names: [String]) -> String {
        names.count == 1 ? names[0] : names.dropLast().joined(separator: ", ") + " and " + names.last!
    }
}
