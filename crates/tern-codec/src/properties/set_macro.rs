//! `property_set!`: generates a property struct and its decoding and
//! encoding from a table of (field, multiplicity, wire kind, identifier).

macro_rules! property_set {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident: $mode:ident $kind:ident = $id:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: property_set!(@type $mode $kind), )*
            /// The order the properties arrived in, when it was not ascending.
            pub wire_order: WireOrder,
        }

        impl $name {
            /// A set with no property, usable in constants and statics.
            pub const EMPTY: Self = Self {
                $( $field: property_set!(@empty $mode), )*
                wire_order: WireOrder::ASCENDING,
            };

            /// True when no property is set.
            pub fn is_empty(&self) -> bool {
                true $( && property_set!(@is_empty $mode self.$field) )*
            }
        }

        impl PropertySet for $name {
            fn read_property(
                &mut self,
                id: PropertyId,
                packet: PacketType,
                reader: &mut Reader,
            ) -> Result<(), DecodeError> {
                match id {
                    $( PropertyId::$id => property_set!(@read $mode $kind, self.$field, id, reader), )*
                    _ => Err(DecodeError::PropertyNotAllowed { property: id, packet }),
                }
            }

            fn skip_property(
                id: PropertyId,
                packet: PacketType,
                reader: &mut Reader,
            ) -> Result<(), DecodeError> {
                match id {
                    $( PropertyId::$id => <$kind as Kind>::read(reader, id).map(drop), )*
                    _ => Err(DecodeError::PropertyNotAllowed { property: id, packet }),
                }
            }

            fn body_len(&self) -> Result<usize, EncodeError> {
                let mut len = 0;
                $( len += property_set!(@len $mode $kind, self.$field, PropertyId::$id); )*
                Ok(len)
            }

            fn write_body(&self, dst: &mut BytesMut) {
                let Some(order) = self.wire_order.identifiers() else {
                    $( property_set!(@write_from $mode $kind, self.$field, PropertyId::$id, 0, dst); )*
                    return;
                };
                // Follow the recorded order, then write whatever was added
                // since decoding in ascending order.
                let mut written = [0usize; 64];
                for &id in order {
                    let count = &mut written[id as usize];
                    let done = match id {
                        $( PropertyId::$id => property_set!(@write_nth $mode $kind, self.$field, PropertyId::$id, *count, dst), )*
                        _ => false,
                    };
                    if done {
                        *count += 1;
                    }
                }
                $( property_set!(@write_from $mode $kind, self.$field, PropertyId::$id, written[PropertyId::$id as usize], dst); )*
            }

            fn set_wire_order(&mut self, order: Box<[PropertyId]>) {
                self.wire_order = WireOrder(Some(order));
            }
        }
    };
    (@type one $kind:ident) => { Option<property_set!(@value $kind)> };
    (@type many $kind:ident) => { Vec<property_set!(@value $kind)> };
    // Spelled out so that the public field types name no private trait.
    (@value Flag) => { bool };
    (@value U16) => { u16 };
    (@value NonZeroU16) => { u16 };
    (@value U32) => { u32 };
    (@value NonZeroU32) => { u32 };
    (@value SubscriptionId) => { u32 };
    (@value Utf8) => { ByteString };
    (@value Topic) => { ByteString };
    (@value Binary) => { Bytes };
    (@value MaxQos) => { QoS };
    (@value Pair) => { (ByteString, ByteString) };
    (@empty one) => { None };
    (@empty many) => { Vec::new() };
    (@is_empty one $slot:expr) => { $slot.is_none() };
    (@is_empty many $slot:expr) => { $slot.is_empty() };
    (@read one $kind:ident, $slot:expr, $id:ident, $reader:ident) => {{
        if $slot.is_some() {
            return Err(DecodeError::DuplicateProperty($id));
        }
        $slot = Some(<$kind as Kind>::read($reader, $id)?);
        Ok(())
    }};
    (@read many $kind:ident, $slot:expr, $id:ident, $reader:ident) => {{
        $slot.push(<$kind as Kind>::read($reader, $id)?);
        Ok(())
    }};
    (@len one $kind:ident, $slot:expr, $id:expr) => {
        match &$slot {
            Some(value) => 1 + <$kind as Kind>::len(value, $id)?,
            None => 0,
        }
    };
    (@len many $kind:ident, $slot:expr, $id:expr) => {{
        let mut len = 0;
        for value in &$slot {
            len += 1 + <$kind as Kind>::len(value, $id)?;
        }
        len
    }};
    (@write_nth one $kind:ident, $slot:expr, $id:expr, $nth:expr, $dst:ident) => {
        match &$slot {
            Some(value) if $nth == 0 => {
                $dst.put_u8($id as u8);
                <$kind as Kind>::write(value, $dst);
                true
            }
            _ => false,
        }
    };
    (@write_nth many $kind:ident, $slot:expr, $id:expr, $nth:expr, $dst:ident) => {
        match $slot.get($nth) {
            Some(value) => {
                $dst.put_u8($id as u8);
                <$kind as Kind>::write(value, $dst);
                true
            }
            None => false,
        }
    };
    (@write_from one $kind:ident, $slot:expr, $id:expr, $from:expr, $dst:ident) => {
        if let (Some(value), 0) = (&$slot, $from) {
            $dst.put_u8($id as u8);
            <$kind as Kind>::write(value, $dst);
        }
    };
    (@write_from many $kind:ident, $slot:expr, $id:expr, $from:expr, $dst:ident) => {
        for value in $slot.iter().skip($from) {
            $dst.put_u8($id as u8);
            <$kind as Kind>::write(value, $dst);
        }
    };
}
